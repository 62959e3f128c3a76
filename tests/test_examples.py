import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_own_loop_example_runs():
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "own_loop.py"), "--steps", "3"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "k-NN top-1 after 3 steps" in proc.stdout
