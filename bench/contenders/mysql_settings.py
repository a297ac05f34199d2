"""Django settings of the MariaDB table: ``bench.djsettings``, on the MariaDB database.

``BENCH_DJANGO`` picks the backend as there: ``stock`` is
``django.db.backends.mysql`` on mysqlclient, ``aorm`` is ``aorm.backends.mysql``
on asyncmy with the pool every contender gets (min = max = POOL_SIZE).
Django's mysql backend has no pool (it would hand ``pool`` to mysqlclient):
stock Django opens a connection per request, in the request's thread.
"""

from bench import common
from bench.djsettings import *  # noqa: F403
from bench.djsettings import MODE

DATABASES = {
    "default": {
        "ENGINE": {"stock": "django.db.backends.mysql", "aorm": "aorm.backends.mysql"}[MODE],
        "NAME": common.DBNAME,
        "USER": common.MYSQL_USER,
        "HOST": common.MYSQL_HOST,
        "PORT": str(common.MYSQL_PORT),
        "OPTIONS": {},
    }
}
if MODE == "aorm":
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": common.POOL_SIZE,
        "max_size": common.POOL_SIZE,
        "timeout": 30,
    }
