"""The peer's processes: ``python -m bench.peer.worker <command>`` (see ``bench.peer``).

- ``setup --accounts N``: migrate the peer's database, make sure N asset accounts exist; prints
  their ids as JSON.
- ``history --legs N``: an account with 10 legs and one with N legs (set-based SQL: N
  transactions of two legs, against a sink account); prints their ids as JSON.
- ``transfer --accounts ID ... --index I``: serve timed slices (``bench.interleave``) of
  ``Account.transfer_to`` of 1 EUR between two random accounts of those given (with two ids: always
  the first to the second, the hot pair).
- ``balance --account ID --repeat R``: p50 and p99 of ``Account.get_balance()`` in ms, as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _send(message: Any) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _recv() -> Any:
    line = sys.stdin.readline()
    return json.loads(line) if line else ["stop"]


def setup(count: int) -> None:
    from django.core.management import call_command
    from hordak.models import Account

    call_command("migrate", verbosity=0, interactive=False)
    have = list(
        Account.objects.filter(name__startswith="bench-")
        .order_by("id")
        .values_list("id", flat=True)
    )
    for i in range(len(have), count):
        have.append(Account.objects.create(name=f"bench-{i}", type="AS", currencies=["EUR"]).pk)
    _send({"accounts": have[:count]})


def history(legs: int) -> None:
    from django.db import connection, transaction
    from hordak.models import Account, Leg, Transaction

    def account(name: str) -> Any:
        found = Account.objects.filter(name=name).first()
        return found or Account.objects.create(name=name, type="AS", currencies=["EUR"])

    sink = account("history-sink")
    made = {}
    for label, n in (("short", 10), ("long", legs)):
        acc = account(f"history-{n}")
        have = Leg.objects.filter(account=acc).count()
        if have < n:
            # N transactions, each a leg on the account and its opposite on the sink, in two
            # set-based statements; triggers off for the load (the rows balance by construction).
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL session_replication_role = replica")
                cursor.execute(
                    f"WITH t AS (INSERT INTO {Transaction._meta.db_table} (uuid, timestamp, date, "
                    "description) SELECT gen_random_uuid(), now() - g * interval '1 second', "
                    "current_date, 'history' FROM generate_series(1, %s) AS g RETURNING id) "
                    f"INSERT INTO {Leg._meta.db_table} (uuid, transaction_id, account_id, credit, "
                    "debit, currency, description) "
                    "SELECT gen_random_uuid(), t.id, a.account, CASE WHEN a.side THEN 1 END, "
                    "CASE WHEN a.side THEN NULL ELSE 1 END, 'EUR', '' FROM t, "
                    "(VALUES (%s::bigint, true), (%s::bigint, false)) AS a(account, side)",
                    [n - have, acc.pk, sink.pk],
                )
            with connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {Leg._meta.db_table}, {Transaction._meta.db_table}")
        made[label] = acc.pk
    _send(made)


def transfer(ids: list[int], index: int) -> None:
    from djmoney.money import Money
    from hordak.models import Account

    from bench.interleave import serve_slices

    accounts = list(Account.objects.filter(pk__in=ids).order_by("id"))
    one = Money(1, "EUR")
    if len(accounts) == 2:
        source, target = accounts

        def op(rng: Any) -> None:
            source.transfer_to(target, one)

    else:

        def op(rng: Any) -> None:
            a, b = rng.sample(accounts, 2)
            a.transfer_to(b, one)

    serve_slices(op, index, _recv, _send)


def balance(account_id: int, repeat: int) -> None:
    from hordak.models import Account

    from bench.common import median_latency

    account = Account.objects.get(pk=account_id)
    p50, p99 = median_latency(account.get_balance, repeat)
    _send({"p50_ms": p50, "p99_ms": p99, "balance": str(account.get_balance())})


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peer.worker")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup").add_argument("--accounts", type=int, required=True)
    sub.add_parser("history").add_argument("--legs", type=int, required=True)
    t = sub.add_parser("transfer")
    t.add_argument("--accounts", type=int, nargs="+", required=True)
    t.add_argument("--index", type=int, default=0)
    b = sub.add_parser("balance")
    b.add_argument("--account", type=int, required=True)
    b.add_argument("--repeat", type=int, required=True)
    args = parser.parse_args()

    import django

    django.setup()
    if args.command == "setup":
        setup(args.accounts)
    elif args.command == "history":
        history(args.legs)
    elif args.command == "transfer":
        transfer(args.accounts, args.index)
    else:
        balance(args.account, args.repeat)


if __name__ == "__main__":
    main()
