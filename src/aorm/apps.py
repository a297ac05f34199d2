"""The Django app: installing it switches Django's async ORM API to native I/O."""

from django.apps import AppConfig


class AormConfig(AppConfig):
    name = "aorm"
    verbose_name = "aorm: native async ORM"

    def ready(self) -> None:
        from aorm import _routing, _scope, _transaction

        _scope.install()
        _routing.install()
        _transaction.install()
