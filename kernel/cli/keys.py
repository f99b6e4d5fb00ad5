"""``heirloom keys``: CurveZMQ keypairs for daemons that leave the host."""

from __future__ import annotations

from pathlib import Path

import click

from heirloom.cli.common import EXIT_INVALID, echo, fail
from heirloom.cli.options import a_path
from heirloom.core.errors import HeirloomError
from heirloom.wire.auth import key_name_problem, new_keypair


def _name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A bad --name is input, refused before anything is written (exit 2, as a bad path)."""
    if (problem := key_name_problem(value)) is not None:
        raise click.BadParameter(problem)
    return value


@click.group("keys")
def keys_group() -> None:
    """CurveZMQ keypairs for encrypted, authenticated daemons."""


@keys_group.command("new")
@click.argument("directory", type=a_path(file_okay=False))
@click.option(
    "--name",
    default="heirloom",
    show_default=True,
    callback=_name,
    help="File name stem of the keypair: 1-100 ASCII letters, digits, '.', '_' or '-', starting with a letter or "
    "digit.",
)
def keys_new(directory: Path, name: str) -> None:
    """Write NAME.key (public: give it to the other side) and NAME.key_secret (keep private) into DIRECTORY.

    Either already there is refused, exit 2: choose another --name or folder."""
    try:
        public, secret = new_keypair(directory, name)
    except HeirloomError as exc:  # a name taken (NAME.key there already): choose another, exit 2 as new plugin's
        fail(f"error: {exc}", EXIT_INVALID)
    echo(f"public key: {public}\nsecret key: {secret} (mode 0600)")


COMMANDS = [keys_group]
