"""The Celery application. Workers and beat start with `celery -A config worker|beat`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from celery import Celery
from celery.signals import worker_process_init

_ROOT = Path(__file__).resolve().parent.parent.parent
for _source_root in (_ROOT / "platform", _ROOT):
    if str(_source_root) not in sys.path:
        sys.path.insert(1, str(_source_root))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("dmp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _pin_blas_threads(**_kwargs) -> None:
    # Each worker process gets BLAS_THREADS threads (default 1) so N worker
    # processes on N cores do not oversubscribe the CPU during model training.
    from django.conf import settings
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=settings.BLAS_THREADS)
