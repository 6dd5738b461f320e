"""Operator start-up and shut-down: settings applied to kopf, the exec transport, metrics."""

from __future__ import annotations

import logging
from typing import Any

import kopf
from prometheus_client import start_http_server

from processcontrol.k8s import KubeClient, load_configuration
from processcontrol.podexec.transport import KubernetesPodExecutor
from processcontrol.reconcile.settings import OperatorSettings
from processcontrol.reconcile.suspension import Runtime


async def start_runtime(
    kopf_settings: kopf.OperatorSettings, logger: logging.Logger | logging.LoggerAdapter[Any]
) -> Runtime:
    """Read our settings, apply them to kopf's, and build what the handlers share."""
    settings = OperatorSettings()
    kopf_settings.persistence.finalizer = settings.finalizer
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="processcontrol.dev")
    kopf_settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="processcontrol.dev")
    # Our events are posted on purpose (kopf.event); log lines of WARNING and above become events too.
    kopf_settings.posting.level = logging.WARNING
    # Watches time out and restart well before any load balancer would cut them silently.
    kopf_settings.watching.server_timeout = 300
    kopf_settings.watching.client_timeout = 330
    configuration = load_configuration()
    executor = KubernetesPodExecutor(
        configuration,
        max_concurrency=settings.exec_concurrency,
        timeout_s=settings.exec_timeout_s,
        retries=settings.exec_retries,
        backoff_s=settings.exec_backoff_s,
    )
    if settings.metrics_port:
        start_http_server(settings.metrics_port)
    logger.info(f"processcontrol settings: {settings.model_dump()}")
    return Runtime(settings=settings, executor=executor, kube=KubeClient(configuration))


async def stop_runtime(runtime: Runtime) -> None:
    """Release the API client and the exec transport's threads."""
    runtime.kube.close()
    # Only the real transport holds threads; the PodExecutor protocol (and test doubles) need no close().
    close = getattr(runtime.executor, "close", None)
    if callable(close):
        close()
