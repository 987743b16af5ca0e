# Python 2.7: run Autobahn|TestSuite's wstest with its servers bound to 127.0.0.1.
#
# wstest's fuzzingserver listens on every interface (autobahn's listenWS() binds
# interface ''), with no option to change it; this wrapper binds it to 127.0.0.1. Use
# "-u 0" too, or the embedded web UI listens on 8080 (all interfaces).
#
#     .venv27/bin/python wstest_local.py -m fuzzingserver -s spec.json -u 0
import sys

import autobahntestsuite.fuzzing as fuzzing
from autobahntestsuite import wstest

_listen = fuzzing.listenWS


def _listen_local(factory, contextFactory=None, backlog=50, interface=""):
    return _listen(factory, contextFactory, backlog, "127.0.0.1")


fuzzing.listenWS = _listen_local

if __name__ == "__main__":
    sys.argv[0] = "wstest"
    wstest.run()
