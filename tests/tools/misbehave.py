"""A test-only tool that fails on purpose, to prove the subprocess adapter's error paths.

Not a codec: it never encodes or decodes anything. ``misbehave.py MODE OUTPUT [PIDFILE]``:

- ``crash``: a message on stderr, exit status 3;
- ``segfault``: killed by SIGSEGV;
- ``hang``: starts a child that sleeps (its pid written to PIDFILE), then sleeps itself;
- ``garbage``: writes random bytes to OUTPUT, exit 0;
- ``nothing``: writes no OUTPUT, exit 0;
- ``empty``: writes an empty OUTPUT, exit 0;
- ``chatty``: 5 MB on stdout and stderr, then a last line on stderr and exit status 1;
- ``noisy``: ``misbehave.py noisy OUTPUT INPUT`` copies INPUT to OUTPUT plus 16 random bytes, exit 0
  (a round trip that decodes, with bytes that differ from one call to the next).
"""

import os
import signal
import subprocess
import sys
import time


def main() -> None:
    mode, output = sys.argv[1], sys.argv[2]
    if mode == "crash":
        sys.stderr.write("misbehave: cannot parse the input, giving up\n")
        sys.exit(3)
    if mode == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if mode == "hang":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(sys.argv[3], "w") as file:
            file.write(str(child.pid))
        sys.stderr.write("misbehave: thinking very hard\n")
        sys.stderr.flush()
        time.sleep(600)
    if mode == "garbage":
        with open(output, "wb") as file:
            file.write(os.urandom(5000))
    if mode == "empty":
        open(output, "wb").close()
    if mode == "noisy":
        with open(sys.argv[3], "rb") as source, open(output, "wb") as file:
            file.write(source.read() + os.urandom(16))
    if mode == "chatty":
        sys.stdout.write("x" * 5_000_000)
        sys.stderr.write("y" * 5_000_000 + "\nmisbehave: the last word\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
