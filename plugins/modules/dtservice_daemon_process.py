"""Ansible module: the reconciler daemon as a managed background process (no systemd)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dtservice_daemon_process
short_description: Keep the reconciler's files in place and its background process running
description:
  - For hosts without systemd (the local federation). Writes each of C(files) into C(dir)
    when its content or mode differs, then makes the process run (or stop) through the
    C(dtservice-reconcilerctl) among them, restarting a running daemon when a file changed.
  - One module call replaces a directory, a copy, two templates and a command task, so a
    converged deploy checks the daemon without five module runs.
  - Check mode changes nothing and says what would change; diff mode shows changed files.
options:
  dir:
    description: The daemon's directory (made 0700).
    type: path
    required: true
  python:
    description: The Python that runs the daemon.
    type: path
    required: true
  files:
    description:
      - The files of the daemon, by name in C(dir); with C(state=started) they must include
        C(dtservice-reconcilerctl). Stopping uses the one already in C(dir).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: File name in C(dir).
        type: str
        required: true
      content:
        description: The whole content.
        type: str
        required: true
      mode:
        description: Octal file mode.
        type: str
        default: "0600"
  state:
    description: Run the daemon or stop it.
    type: str
    choices: [started, stopped]
    default: started
author: Sightline Innovation dtService maintainers (@sightlineinnovation)
"""

EXAMPLES = r"""
- name: Run the reconciler
  sightline.dtservice.dtservice_daemon_process:
    dir: /var/lib/dtservice-reconciler
    python: /usr/bin/python3
    files:
      - {name: dtservice-reconcilerctl, content: "{{ lookup('file', 'dtservice-reconcilerctl') }}", mode: "0700"}
"""

RETURN = r"""
files_changed:
  description: Names of the files written (or that would be, in check mode).
  returned: always
  type: list
  elements: str
process:
  description: What happened to the process (C(unchanged), C(started), C(restarted), C(stopped)).
  returned: always
  type: str
"""

import os
import subprocess
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

CTL = "dtservice-reconcilerctl"
ARGUMENT_SPEC = {
    "dir": {"type": "path", "required": True},
    "python": {"type": "path", "required": True},
    "files": {"type": "list", "elements": "dict", "default": [], "options": {
        "name": {"type": "str", "required": True},
        "content": {"type": "str", "required": True},
        "mode": {"type": "str", "default": "0600"},
    }},
    "state": {"type": "str", "choices": ["started", "stopped"], "default": "started"},
}


def _differs(path: Path, content: str, mode: int) -> bool:
    try:
        return path.read_text() != content or (path.stat().st_mode & 0o7777) != mode
    except (OSError, UnicodeDecodeError):
        return True


def run(module) -> None:
    """The module's work, given an AnsibleModule or the in-process stand-in of plugins/action."""
    directory = Path(module.params["dir"])
    files = module.params["files"]
    wanted = module.params["state"] == "started"
    if wanted and CTL not in {f["name"] for f in files}:
        module.fail_json(msg=f"files must include {CTL}, which starts and stops the daemon")
    changed = [f for f in files if _differs(directory / f["name"], f["content"], int(f["mode"], 8))]

    def ctl(action: str) -> str:
        done = subprocess.run([str(directory / CTL), str(directory), module.params["python"], action],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            module.fail_json(msg=f"{CTL} {action} failed: {done.stderr.strip()[-2000:]}")
        return done.stdout.strip()

    running = (directory / CTL).exists() and ctl("status") == "running"
    if wanted:
        process = "restarted" if running and changed else "unchanged" if running else "started"
    else:
        process = "stopped" if running else "unchanged"
    result = {"changed": bool(changed and wanted) or process != "unchanged",
              "files_changed": [f["name"] for f in changed] if wanted else [], "process": process}
    if module._diff and wanted:
        result["diff"] = [{"before_header": str(directory / f["name"]), "after_header": str(directory / f["name"]),
                           "before": _read(directory / f["name"]), "after": f["content"]} for f in changed]
    if module.check_mode:
        module.exit_json(**result)
    if wanted:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for f in changed:
            path = directory / f["name"]
            # Created with its mode, so the settings are never readable by others, not even briefly.
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, int(f["mode"], 8))
            with os.fdopen(descriptor, "w") as out:
                out.write(f["content"])
            path.chmod(int(f["mode"], 8))
        if process != "unchanged":
            ctl("restart" if process == "restarted" else "start")
    elif process == "stopped":
        ctl("stop")
    module.exit_json(**result)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return ""


def main() -> None:
    run(AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True))


if __name__ == "__main__":
    main()
