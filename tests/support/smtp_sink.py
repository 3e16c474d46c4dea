#!/usr/bin/env python3
"""An SMTP server for the tests (aiosmtpd), on 127.0.0.1 at a free port.

Prints "PORT <n>" once it listens. Every transaction is appended to the JSON-lines file given
with --log: {"mail_from", "rcpt_tos", "reply", "headers" (decoded), "body" (decoded)}. The recipient chooses the answer:
reject@… gets 554 at RCPT (permanent), unknown…@… (unknown@, unknown2@…) 550 at RCPT naming
the address (Postfix's way), gone…@… 550 at RCPT without naming it (Gmail's way),
greylist…@… 451 at RCPT the first time (greylisting) and 250 after, defer@… gets 451 at DATA
the first time (transient) and 250 after, anyone else 250. With --cert/--key the server offers STARTTLS and requires it;
with --auth user:password it also requires that login (after STARTTLS).
"""

import argparse
import asyncio
import email
import email.policy
import json
import logging
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Sink:
    def __init__(self, log):
        self.log = log
        self.deferred = set()

    def record(self, envelope, reply):
        message = email.message_from_bytes(envelope.content or b"", policy=email.policy.default)
        entry = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "reply": reply,
            "headers": {name.lower(): str(value) for name, value in message.items()},
            "body": message.get_content() if envelope.content else "",
        }
        with open(self.log, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = None
        if address.startswith("reject@"):
            reply = "554 5.7.1 refused by policy"
        elif address.split("@")[0].startswith("unknown"):
            reply = "550 5.1.1 <%s>: user unknown" % address
        elif address.split("@")[0].startswith("gone"):
            reply = "550 5.1.1 the account you tried to reach does not exist"
        elif address.split("@")[0].startswith("greylist") and address not in self.deferred:
            self.deferred.add(address)
            reply = "451 4.7.1 greylisted"
        if reply:
            # Recorded with the refused address, which the envelope never takes.
            envelope.rcpt_tos.append(address)
            self.record(envelope, reply)
            envelope.rcpt_tos.remove(address)
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        reply = "250 2.0.0 accepted"
        for address in envelope.rcpt_tos:
            if address.startswith("defer@") and address not in self.deferred:
                self.deferred.add(address)
                reply = "451 4.3.0 try again later"
        self.record(envelope, reply)
        return reply


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--auth")
    args = parser.parse_args()
    # A refused handshake is what one test wants: no traceback for it on the test's stderr.
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)
    context = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    sink = Sink(args.log)

    def authenticator(server, session, envelope, mechanism, auth_data):
        wanted = (args.auth or "").encode("utf-8")
        given = b""
        if isinstance(auth_data, LoginPassword):
            given = auth_data.login + b":" + auth_data.password
        return AuthResult(success=bool(wanted) and given == wanted)

    def factory():
        return SMTP(
            sink,
            hostname="sink.test",
            decode_data=False,
            tls_context=context,
            require_starttls=context is not None,
            authenticator=authenticator if args.auth else None,
            auth_required=bool(args.auth),
        )

    server = loop.run_until_complete(loop.create_server(factory, host="127.0.0.1", port=0))
    print("PORT %d" % server.sockets[0].getsockname()[1], flush=True)
    # The test kills us; stdin closing (the test process gone) ends us too.
    loop.add_reader(sys.stdin.fileno(), lambda: loop.stop() if not sys.stdin.read(1) else None)
    loop.run_forever()


if __name__ == "__main__":
    main()
