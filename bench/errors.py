"""User errors, and the click group that turns them into one line on stderr and exit status 2."""

import click

from bench.quoting import one_line


class UserError(Exception):
    """A bad input or request from the user: one clear line, no traceback."""


class UserErrorGroup(click.Group):
    """A click group whose commands' UserErrors print ``bench: error: ...`` and exit with status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            lines = str(exc).split("\n")  # a message of several lines keeps them, each escaped
            click.echo("bench: error: " + "\n".join(one_line(line) for line in lines), err=True)
            ctx.exit(2)
