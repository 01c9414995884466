"""A real SMTP server for tests/it/notify.rs: Debian's aiosmtpd (python3-aiosmtpd) with
STARTTLS required before AUTH, AUTH required before mail, and every message it takes
stored in a Maildir, as a provider's submission port (587) behaves.

Usage: /usr/bin/python3 smtp_server.py PORT MAILDIR CERT KEY USER PASSWORD
Prints "ready" once it listens; runs until killed.
"""
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword

port, maildir, cert, key, user, password = sys.argv[1:7]

context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == user
        and auth_data.password.decode() == password
    )
    return AuthResult(success=ok)


controller = Controller(
    Mailbox(maildir),
    hostname="127.0.0.1",
    port=int(port),
    server_hostname="mail.example",
    tls_context=context,
    require_starttls=True,
    authenticator=authenticator,
    auth_required=True,
    auth_require_tls=True,
)
controller.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
