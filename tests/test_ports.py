"""Two test suites may run at once (two worktrees, CI jobs): a multi-process test's launcher rendezvous must use a
port the OS just handed out (conftest's `free_port`), never a fixed one (torchrun's default 29500 or a literal)."""

import re
import socket
from pathlib import Path

LAUNCHERS = ("torch.distributed.run", "accelerate.commands.launch")
PORT_FLAGS = re.compile(r'"(--master-port|--master_port|--main_process_port)",\s*(\S+?)[,\]]')


def launcher_ports(text: str) -> list[str | None]:
    """For each launcher command in a test's source, the expression after its port flag (None: no port flag, so the
    launcher's default 29500)."""
    out = []
    for m in re.finditer("|".join(re.escape(n) for n in LAUNCHERS), text):
        flag = PORT_FLAGS.search(text, m.end(), m.end() + 400)
        out.append(flag.group(2) if flag else None)
    return out


def test_free_port_is_free(free_port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", free_port))  # nobody holds it: the launcher can listen there
    assert 1024 <= free_port <= 65535


def test_the_check_finds_a_fixed_or_missing_port():
    assert launcher_ports('["-m", "torch.distributed.run", "--master-port", "29547", "-m"]') == ['"29547"']
    assert launcher_ports('["-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "obliviate"]') == [None]
    assert launcher_ports('"accelerate.commands.launch", "--main_process_port", str(free_port)]') == ["str(free_port)"]


def test_every_launcher_in_the_tests_takes_a_free_port():
    found = {}
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        if path.name != Path(__file__).name:
            for port in launcher_ports(path.read_text()):
                found.setdefault(path.name, []).append(port)
    assert found, "no multi-process test found: the check checks nothing"
    bad = {name: ports for name, ports in found.items()
           if any(p not in ("str(free_port)", "str(_free_port())") for p in ports)}
    assert not bad, bad
