"""`bingo-host status`: is this bingo host healthy, and if not, why?

Cheap on a 0.5 GiB instance: no boto3, no jinja2; one `systemctl show` for every unit; psutil
for disks and memory; one MariaDB connection; two or three HTTP requests to the local nginx.

The report is a plain dict whose shape is documented (and tested) by docs/status-schema.json:
keys may be added, and ``checks.SCHEMA_VERSION`` changes when one is removed or changes meaning.
checks.py, database.py and records.py fill it, checks.collect gives the verdict; text.py
renders it for people.
"""

from .checks import collect
from .text import render_text

__all__ = ["collect", "render_text"]
