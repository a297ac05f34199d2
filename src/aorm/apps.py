"""The Django app: installing it switches Django's async ORM API to native I/O."""

from django.apps import AppConfig


class AormConfig(AppConfig):
    name = "aorm"
    verbose_name = "aorm: native async ORM"

    def ready(self) -> None:
        from django.core import checks

        from aorm import _install
        from aorm.checks import check_settings

        _install.install()
        checks.register(check_settings)
