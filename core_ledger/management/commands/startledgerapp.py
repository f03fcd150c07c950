"""Scaffold a new ledger app: operations, concrete models, declaration, API, admin, tests."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from argparse import ArgumentParser
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError
from django.core.management.templates import TemplateCommand

from core_ledger.ledger import registry
from core_ledger.operations import SharedOperation

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "app_template"
_OPERATION = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_LABEL = re.compile(r"^[a-z][a-z0-9_]{0,49}$")
DIRECTIONS = ("credit", "debit")
POSTERS = ("user", "staff")


@dataclass(frozen=True)
class OperationSpec:
    """One ``NAME:direction:posted_by`` item of ``--operations``."""

    name: str
    direction: str
    posted_by: str

    @property
    def label(self) -> str:
        return self.name.replace("_", " ").capitalize()


def parse_operations(text: str | None) -> list[OperationSpec]:
    """Parse ``"OP:credit:staff,OP2:debit:user"``; a CommandError says what is wrong."""
    specs: list[OperationSpec] = []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        parts = [p.strip() for p in item.split(":")]
        if len(parts) != 3:
            raise CommandError(
                f"--operations item {item!r} must be NAME:direction:posted_by, "
                "e.g. QUIZ_PASS:credit:staff."
            )
        name, direction, posted_by = parts[0], parts[1].lower(), parts[2].lower()
        if not _OPERATION.match(name):
            raise CommandError(
                f"Operation name {name!r} must be UPPER_SNAKE_CASE (A-Z, 0-9, _), "
                "starting with a letter, at most 64 characters."
            )
        if name in SharedOperation.names:
            raise CommandError(
                f"{name} is a shared operation every ledger has already; do not redeclare it."
            )
        if direction not in DIRECTIONS:
            raise CommandError(
                f"Operation {name}: direction {parts[1]!r} must be one of: {', '.join(DIRECTIONS)}."
            )
        if posted_by not in POSTERS:
            raise CommandError(
                f"Operation {name}: posted_by {parts[2]!r} must be one of: {', '.join(POSTERS)}."
            )
        if any(spec.name == name for spec in specs):
            raise CommandError(f"Operation {name} is listed twice.")
        specs.append(OperationSpec(name, direction, posted_by))
    return specs


def _camel(label: str) -> str:
    return "".join(part.capitalize() for part in label.split("_") if part)


def _code(label: str, prefix: str, specs: list[OperationSpec]) -> dict[str, str]:
    """The Python snippets the template cannot express neatly (they depend on the list)."""
    shared = "".join(f'\n    {m.name} = "{m.value}", _("{m.label}")' for m in SharedOperation)
    own = "".join(f'\n    {s.name} = "{s.name}", _("{s.label}")' for s in specs)
    operations = (
        f"class {prefix}Operation(LedgerOperation):"
        "\n    # Shared members, restated so that type-checkers see them (check core_ledger.E010)."
        f"{shared}"
        + (f"\n    # {prefix}'s own (append only; never reorder or relabel).{own}" if specs else "")
    )
    if specs:
        rules = "".join(
            f"\n        {prefix}Operation.{s.name}: OperationRule("
            f"Direction.{s.direction.upper()}, PostedBy.{s.posted_by.upper()}),"
            for s in specs
        )
        rules_code = f"rules={{{rules}\n    }},"
        imports = "from core_ledger.ledger import Direction, Ledger, OperationRule, PostedBy"
        expected = "".join(f'\n    "{s.name}": ("{s.direction}", "{s.posted_by}"),' for s in specs)
        expected_code = f"EXPECTED_RULES: dict[str, tuple[str, str]] = {{{expected}\n}}"
    else:
        rules_code = "rules={},"
        imports = "from core_ledger.ledger import Ledger"
        expected_code = "EXPECTED_RULES: dict[str, tuple[str, str]] = {}"
    return {
        "operations_code": operations,
        "rules_code": rules_code,
        "ledger_imports": imports,
        "expected_rules_code": expected_code,
    }


class Command(TemplateCommand):
    help = """Scaffold a new ledger app on the shared core: operations.py (the shared operations
plus yours), models.py (its entry and balance tables), ledger.py (the declaration and the rule of
each operation), apps.py, admin.py, and tests/ that exercise it all. Then follow the printed
steps (INSTALLED_APPS, migrations, signup credits for existing users, the test path): the API
(/api/<label>/, mounted by the core), the admin and every ledger command work for it.

--operations takes NAME:direction:posted_by items separated by commas; direction is credit or
debit; posted_by is staff (staff or a service account only) or user (the account holder too).
The ledger label defaults to NAME without an "app_" prefix.

Examples:
  python manage.py startledgerapp app_gamma --operations "QUIZ_PASS:credit:staff,HINT:debit:user"
  python manage.py startledgerapp loyalty --label points --name "Loyalty points"
"""
    missing_args_message = "You must provide an app name, e.g. app_gamma."

    def add_arguments(self, parser: ArgumentParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--operations",
            default="",
            help='The app\'s own operations, e.g. "QUIZ_PASS:credit:staff,HINT:debit:user".',
        )
        parser.add_argument("--label", help='Ledger label (default: NAME without "app_").')
        parser.add_argument("--ledger-name", dest="ledger_name", help="Human name of the ledger.")

    def handle(self, *args: Any, **options: Any) -> None:
        name: str = options.pop("name")
        target: str | None = options.pop("directory")
        self.app_or_project = "app"
        self.a_or_an = "an"
        self.validate_name(name)  # an identifier, and not an importable module
        label = options["label"] or re.sub(r"^app_", "", name).lower()
        if not _LABEL.match(label):
            raise CommandError(
                f"Ledger label {label!r} must be lower_snake_case (a-z, 0-9, _), starting with "
                "a letter; pass --label."
            )
        if label in registry.labels():
            raise CommandError(
                f"A ledger labelled {label!r} exists already (known: "
                f"{', '.join(registry.labels())}); pass another --label."
            )
        specs = parse_operations(options["operations"])
        prefix = _camel(label)
        ledger_name = options["ledger_name"] or label.replace("_", " ").capitalize()
        if '"' in ledger_name or "\\" in ledger_name:
            raise CommandError("--ledger-name cannot contain quotes or backslashes.")
        options.update(
            template=options.get("template") or str(TEMPLATE_DIR),
            ledger_label=label,
            ledger_label_words=label.replace("_", " "),
            ledger_name=ledger_name,
            class_prefix=prefix,
            operations=specs,
            **_code(label, prefix, specs),
        )
        super().handle("app", name, target, **options)
        app_dir = Path(target).resolve() if target else Path.cwd() / name
        self._tidy(app_dir)
        self.stdout.write(
            self.style.SUCCESS(f"Created ledger app {name!r} (ledger {label!r}) in {app_dir}.")
        )
        self.stdout.write(
            "Next steps:\n"
            f'1. Add "{name}" to INSTALLED_APPS in your settings.\n'
            f"2. python manage.py makemigrations {name} && python manage.py migrate\n"
            f"3. Users who exist already have no signup credit in the new ledger; give it once:\n"
            f"   python manage.py ledger_grant --ledger {label} --operation SIGNUP_CREDIT "
            "--all-users\n"
            f"   (idempotent: a rerun grants nothing twice; new users get it on creation).\n"
            f"4. Its tests: pytest {name} (make test collects every app folder; if your "
            f"pytest.ini sets testpaths, add {name} there).\n"
            f"URLconf: nothing to add; the core mounts the ledger's API at /api/{label}/."
        )

    def _tidy(self, app_dir: Path) -> None:
        """Sort imports and format the generated code with ruff when it is installed."""
        ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
        if not Path(ruff).exists():
            return
        for args in (["check", "--fix", "--select", "I", "--quiet"], ["format", "--quiet"]):
            subprocess.run(
                [ruff, *args, str(app_dir)], check=False, capture_output=True, cwd=app_dir.parent
            )
