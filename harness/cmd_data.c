/* placeholder: replaced by the datasets work */
#include "harness/cli.h"
int kb_cmd_data(int argc, char **argv, kb_err *err) { kb_fail(err, "data: not yet"); return KB_EXIT_FAIL; }
