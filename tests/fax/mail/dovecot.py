"""A throwaway Dovecot IMAP server (Debian's dovecot-imapd) on a free loopback port, with
its own configuration, users and maildirs in a temporary directory."""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
START_SECONDS = 20.0

CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 0
mail_location = maildir:{root}/mail/%u
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""


def open_root() -> None:
    """Let unprivileged processes walk from ``/`` (dovecot's auth and mail processes run as
    ``dovenull`` and ``dovecot``). A Debian system's root directory is 0755; a chroot
    unpacked into a ``mktemp -d`` directory (as ``../shared/tools/fresh-debian-test``
    builds one) keeps that directory's 0700, where no daemon that drops root can open
    anything. Only then, and only as root, is the root directory given its usual mode."""
    mode = os.stat("/").st_mode
    if os.getuid() == 0 and mode & 0o005 != 0o005:
        os.chmod("/", (mode & 0o7777) | 0o755)


class Dovecot:
    """``start()`` runs dovecot in the foreground (its own process group); ``stop()``."""

    def __init__(self, root: Path, user: str = "fax", password: str = "secret") -> None:
        self.root = root
        self.port = free_port()
        self.user = user
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Dovecot:
        """Write the configuration and start; returns once IMAP answers."""
        for sub in ("run", "state", "mail", "home"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        open_root()
        me = pwd.getpwuid(os.getuid())
        # Dovecot refuses uid 0 for mail: as root, the mail belongs to the dovecot user.
        owner = pwd.getpwnam("dovecot") if os.getuid() == 0 else me
        internal = "dovenull" if os.getuid() == 0 else me.pw_name
        for sub in ("mail", "home"):
            os.chown(self.root / sub, owner.pw_uid, owner.pw_gid)
        conf = self.root / "dovecot.conf"
        conf.write_text(CONFIG.format(root=self.root, port=self.port, uid=owner.pw_uid,
                                      gid=owner.pw_gid, user=internal,
                                      group=internal))  # fmt: skip
        (self.root / "passwd").write_text(f"{self.user}:{{PLAIN}}{self.password}\n")
        os.chmod(self.root, 0o755)
        self.proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                with imaplib.IMAP4("127.0.0.1", self.port, timeout=2) as probe:
                    probe.login(self.user, self.password)
                    typ, data = probe.select("INBOX")
                    if typ != "OK":
                        raise imaplib.IMAP4.error(str(data))
                    return self
            except (OSError, imaplib.IMAP4.error):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.root / "dovecot.log")
                    text = log.read_text() if log.exists() else ""
                    self.stop()
                    raise RuntimeError(f"dovecot did not start:\n{text}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop dovecot and its children."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def client(self) -> imaplib.IMAP4:
        """A logged-in stdlib client (the test's side: append, list, fetch)."""
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        client.login(self.user, self.password)
        return client

    def append(self, raw: bytes, mailbox: str = "INBOX") -> None:
        """Deliver ``raw`` into ``mailbox`` (as the provider's MTA would)."""
        with self.client() as client:
            typ, data = client.append(mailbox, "", imaplib.Time2Internaldate(time.time()), raw)
            assert typ == "OK", data

    def count(self, mailbox: str) -> int:
        """How many mails ``mailbox`` holds (0 if it does not exist)."""
        with self.client() as client:
            typ, data = client.select(mailbox, readonly=True)
            return int(data[0] or 0) if typ == "OK" else 0
