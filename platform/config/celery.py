"""The Celery application. Workers and beat start with `celery -A config worker|beat`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from celery import Celery, Task, shared_task
from celery.signals import worker_process_init

_ROOT = Path(__file__).resolve().parent.parent.parent
for _source_root in (_ROOT / "platform", _ROOT):
    if str(_source_root) not in sys.path:
        sys.path.insert(1, str(_source_root))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("dmp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _embedded_broker(sender: Celery, **_kwargs) -> None:
    # Without CELERY_BROKER_URL tasks run eagerly and never reach a broker, yet Celery still builds a producer
    # for them, which reaches for a default AMQP server and warns "No hostname was supplied". An in-process
    # transport keeps the embedded mode quiet; a configured broker is left alone.
    if sender.conf.task_always_eager and not sender.conf.broker_url:
        sender.conf.broker_url = "memory://localhost/"


def legacy_task_alias(old_name: str, task: Task) -> Task:
    """Keep an old task name working after a rename: a message sent under `old_name` is forwarded to `task`.

    Beat rows are migrated to the new name; the alias is for messages already queued (or scheduled with a
    countdown) when the rename is deployed. It carries `legacy_alias_of`, so tests can tell aliases apart.
    """

    def forward(*args, **kwargs):
        return task.apply_async(args=args, kwargs=kwargs).id

    forward.__name__ = forward.__qualname__ = old_name.rsplit(".", 1)[-1]
    forward.__doc__ = f"Old name of {task.name}: forwards the message to it."
    return shared_task(name=old_name, legacy_alias_of=task.name, acks_late=True)(forward)


@worker_process_init.connect
def _pin_blas_threads(**_kwargs) -> None:
    # Each worker process gets BLAS_THREADS threads (default 1) so N worker
    # processes on N cores do not oversubscribe the CPU during model training.
    from django.conf import settings
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=settings.BLAS_THREADS)
