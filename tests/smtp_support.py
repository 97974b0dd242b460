"""A real SMTP server on 127.0.0.1 for the tests: it speaks enough SMTP for smtplib (and so Django's SMTP backend),
refuses the addresses a test names with 550 at RCPT TO, records every message it accepts with the connection it
came over, and can hold its answer to a message's data until the test lets it go."""

from __future__ import annotations

import email
import socketserver
import threading
from dataclasses import dataclass, field


@dataclass
class Session:
    """One client connection: each message accepted over it, in order, as (envelope recipients, To header)."""

    messages: list[tuple[list[str], str]] = field(default_factory=list)


class SmtpServer:
    def __init__(self) -> None:
        self.refuse: set[str] = set()
        self.sessions: list[Session] = []
        self.hold = False  # when set, a message's data waits for release() before it is accepted
        self.hold_after = 0  # ... the first message after this many accepted ones
        self.holding = threading.Event()  # set while a message waits
        self._released = threading.Event()
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")
                self.wfile.flush()

            def handle(self) -> None:
                session = Session()
                server.sessions.append(session)
                recipients: list[str] = []
                self.reply("220 test ESMTP")
                for raw in self.rfile:
                    line = raw.decode().strip()
                    verb = line.split(" ", 1)[0].split(":", 1)[0].upper()
                    if verb in ("EHLO", "HELO", "NOOP"):
                        self.reply("250 ok")
                    elif verb == "MAIL":
                        recipients = []
                        self.reply("250 ok")
                    elif verb == "RCPT":
                        address = line.split(":", 1)[1].strip().strip("<>").split(">")[0]
                        if address in server.refuse:
                            self.reply(f"550 5.1.1 <{address}>: no such mailbox")
                        else:
                            recipients.append(address)
                            self.reply("250 ok")
                    elif verb == "RSET":
                        recipients = []
                        self.reply("250 ok")
                    elif verb == "DATA":
                        self.reply("354 go ahead")
                        data = b"".join(iter(self.rfile.readline, b".\r\n"))
                        to_header = str(email.message_from_bytes(data)["To"])
                        accepted = sum(len(s.messages) for s in server.sessions)
                        if server.hold and accepted >= server.hold_after:
                            server.hold = False
                            server.holding.set()
                            server._released.wait()
                        session.messages.append((recipients, to_header))
                        recipients = []
                        self.reply("250 accepted")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("502 not implemented")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def release(self) -> None:
        self._released.set()

    def delivered(self) -> list[str]:
        """Every recipient of every accepted message, sorted (one entry per message and recipient)."""
        return sorted(a for session in self.sessions for rcpts, _ in session.messages for a in rcpts)

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()
