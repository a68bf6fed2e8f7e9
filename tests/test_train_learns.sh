#!/usr/bin/env bash
# `kindbench train` learns: 300 steps of a small DiT (depth 2, width 64,
# patch 4, batch 16, lr 1e-3) on the synthetic 16x16 cache bring the mean
# loss of the last 20 steps below 0.6 x the mean of the first 5 (measured:
# about 0.1). loss.csv is read back with Python's csv module: the header, 8
# fields per row, every row of steps 1..300, finite numbers, images_seen =
# step x batch. train.json holds the run's settings.
set -u
source "$(dirname "$0")/test_train_common.sh"
workspace train_learns
make_cache data.kbd 16 || { bad "make the synthetic cache" "data prepare failed"; finish; exit 1; }

if "$KB" train --data data.kbd --out run --depth 2 --width 64 --heads 4 --patch 4 --batch 16 --lr 1e-3 --steps 300 \
     --log-every 1 --ckpt-every 100 --threads 1 > stdout.txt 2> stderr.txt; then
  ok "300 training steps: $(tail -n 1 stdout.txt)"
else bad "300 training steps" "$(tail -n 2 stderr.txt)"; fi

if msg=$("$PY" - run/loss.csv << 'EOF'
import csv, math, sys
rows = list(csv.reader(open(sys.argv[1], newline="")))
want = ["step", "loss", "mse", "vb", "grad_norm", "lr", "steps_per_sec", "images_seen"]
if rows[0] != want:
    sys.exit("header %s" % rows[0])
body = rows[1:]
if [len(r) for r in body] != [8] * len(body):
    sys.exit("a row without 8 fields")
vals = [[float(x) for x in r] for r in body]
if [int(v[0]) for v in vals] != list(range(1, 301)):
    sys.exit("steps are not 1..300")
if not all(math.isfinite(x) for v in vals for x in v):
    sys.exit("a non-finite value")
if any(int(v[7]) != int(v[0]) * 16 or v[5] != 1e-3 or abs(v[1] - v[2] - v[3]) > 1e-5 * abs(v[1]) for v in vals):
    sys.exit("images_seen, lr or loss = mse + vb wrong")
first = sum(v[1] for v in vals[:5]) / 5
last = sum(v[1] for v in vals[-20:]) / 20
print("loss: first 5 steps %.4f, last 20 steps %.4f, ratio %.3f (asserted < 0.6)" % (first, last, last / first))
sys.exit(0 if last < 0.6 * first else 1)
EOF
); then ok "loss.csv valid, $msg"; else bad "loss.csv / learning" "$msg"; fi

if "$PY" -c "import json,sys; j=json.load(open('run/train.json')); sys.exit(not (j['format']=='kindbench-train-1' and
   j['config']['num_classes']==3 and j['config']['input_size']==16 and j['config']['in_channels']==3 and
   j['optim']['lr']==1e-3 and j['data']['split']=='train' and j['data']['classes']=='pretrain' and j['flip']))"
then ok "train.json: config from the data (16x16x3, 3 classes), lr, split, classes, flip"
else bad "train.json" "$(head -c 600 run/train.json)"; fi
finish
