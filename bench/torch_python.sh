# Sourced by the bench scripts: PYTHON, unless set, becomes the interpreter
# with torch: Debian's /usr/bin/python3 here (the python3 first on PATH
# lacks it), the image's python3 on a GPU machine.
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  /usr/bin/python3 -c 'import torch' 2>/dev/null && PYTHON=/usr/bin/python3
fi
