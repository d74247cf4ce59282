"""User errors, and the click group that turns them into one line on stderr and exit status 2."""

import click


class UserError(Exception):
    """A bad input or request from the user: one clear line, no traceback."""


class UserErrorGroup(click.Group):
    """A click group whose commands' UserErrors print ``bench: error: ...`` and exit with status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"bench: error: {exc}", err=True)
            ctx.exit(2)
