"""The compute host's Celery worker: one per hypervisor host, consuming queue ``compute.<host>``.

Start it with::

    celery -A compute_tasks.worker worker -Q compute.$COMPUTE_HOST -n compute@$COMPUTE_HOST \\
        --concurrency 2 --pool threads

One process can also stand in for many hosts (for scale tests and benchmarks on libvirt's test
driver): with ``COMPUTE_HOSTS=sim-[0001-1000]`` it consumes every host's queue (start it without
``-Q``), heartbeats for each host, and runs each task as the host whose queue it came from::

    COMPUTE_HOSTS=sim-[0001-1000] COMPUTE_LIBVIRT_URI=test:///default \
        celery -A compute_tasks.worker worker -n compute@sims --concurrency 16 --pool threads

The threads pool is the one to use (and the default here): libvirt calls block in C with the GIL
released, and a single libvirt connection is shared by all threads. A forking pool would copy that
connection into children, which libvirt does not support.

The tasks are thin: decode the message, hand it to the ComputeManager, which reports back to the
conductor through ``compute_tasks.rpc``. This app is made Celery's default and current app, so the
senders in rpc.py use it from every thread. A heartbeat thread starts when the worker is ready: one
beat at once, then one every COMPUTE_HEARTBEAT_INTERVAL seconds.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Celery, current_task, signals
from kombu import Exchange, Queue

import compute_tasks.kombu_redis  # noqa: F401 - keeps the worker alive through a Redis restart
from compute_tasks import request_ids, rpc, signing
from compute_tasks.config import ConfigError, HostConfig
from compute_tasks.drivers import load_driver
from compute_tasks.fleet import HostScopedDriver
from compute_tasks.images import ImageCache
from compute_tasks.manager import ComputeManager
from compute_tasks.private_files import private_dir
from compute_tasks.rpc import (
    ActionResult,
    BuildFailed,
    BuildRequest,
    CacheImagesRequest,
    ConsoleOutputRequest,
    DiagnosticsRequest,
    FinishMigrationRequest,
    FinishRevertRequest,
    GraphsRequest,
    HostNetworkPlan,
    InstanceRef,
    InterfaceRequest,
    LiveMigrateRequest,
    Message,
    MigrateDiskRequest,
    MigrationRef,
    PrepareLiveMigrationRequest,
    RebuildRequest,
    RescueRequest,
    ShelveRequest,
    SnapshotRequest,
    VolumeRequest,
)

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

try:
    config = HostConfig.from_env()
except ConfigError as exc:
    # Stop before Celery starts, with one line that names the setting instead of a traceback.
    raise SystemExit(f"compute worker: invalid configuration: {exc}") from None

# What this process makes is its owner's alone, also where no explicit mode is set (compute_tasks.private_files).
os.umask(0o077)

# No fix-ups: Celery would set Django up in this process whenever DJANGO_SETTINGS_MODULE is in the
# environment, and a hypervisor must never run the control plane's code (nor hold its signing key).
app = Celery("compute", set_as_current=True, fixups=[])
app.conf.update(
    broker_url=config.broker_url,
    broker_connection_retry_on_startup=True,
    result_backend=None,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    event_serializer="json",
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # Reports wait out a broker restart (about 40 s) rather than be lost with the outcome they carry: the
    # publish is retried, and so is getting a connection to publish on (kombu gives up after 4 s otherwise).
    task_publish_retry_policy={"max_retries": 45, "interval_start": 0, "interval_step": 0.5, "interval_max": 1.0},
    # One Redis list per queue: no message has a priority (as in portal/settings/base.py).
    broker_transport_options={"connect_retries_timeout": 40, "priority_steps": [0]},
    # After a reconnection Celery lowers the prefetch count while old tasks finish and raises it again
    # as their acknowledgements go out; those go to the dead connection, and the worker was seen to
    # stop consuming for good after a RabbitMQ restart (tests/faults/test_broker_restart.py).
    worker_enable_prefetch_count_reduction=False,
    worker_prefetch_multiplier=1,
    worker_pool="threads",
    worker_concurrency=2,
    task_default_queue=rpc.compute_queue(config.host),
    enable_utc=True,
    timezone="UTC",
    # Every line names the request it is about (compute_tasks.request_ids).
    worker_log_format=request_ids.LOG_FORMAT,
    worker_task_log_format=request_ids.TASK_LOG_FORMAT,
)
if config.hosts:
    # Many simulated hosts: consume every host's queue (start the worker without -Q).
    app.conf.task_queues = [
        Queue(rpc.compute_queue(name), Exchange(rpc.compute_queue(name), type="direct"), rpc.compute_queue(name))
        for name in config.hosts
    ]
app.set_default()
app.set_current()

# --- who this host is, and whom it believes ---------------------------------------------------------------
#
# The credentials are read when the worker starts (not at import: tools import this module to inspect the
# app). The host signs everything it sends as the host whose queue the running task came from, believes
# only messages the control plane signed for that queue, and acts on each one once.

_trust: dict[str, Any] = {}


def credentials() -> signing.HostCredentials:
    if "credentials" not in _trust:
        path = config.credentials_file
        try:
            loaded = signing.HostCredentials.load(path)
        except FileNotFoundError:
            raise CredentialsError(
                f"no credentials at {path}: enroll this host on the control plane "
                f"(manage.py host_enroll {config.host} --output FILE) and set COMPUTE_CREDENTIALS=FILE"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CredentialsError(f"the credentials at {path} cannot be read: {exc}") from None
        missing = [name for name in config.all_hosts if name not in loaded.keys]
        if missing:
            raise CredentialsError(f"the credentials at {path} hold no key for {', '.join(missing[:5])}")
        _trust["credentials"] = loaded
        _trust["nonces"] = signing.NonceStore(config.state_dir / "nonces.sqlite3")
    return _trust["credentials"]


class CredentialsError(Exception):
    pass


rpc.use_signer(lambda: credentials().signer(current_host()))
rpc.use_verifier(lambda sender: credentials().control_plane if sender == signing.CONTROL_PLANE else None)


@signals.worker_init.connect
def _load_credentials(sender: Any = None, **_: Any) -> None:
    if getattr(sender, "app", app) is not app:
        return
    private_dir(config.state_dir)
    try:
        credentials()
    except CredentialsError as exc:
        # Stop before consuming anything: a host that cannot prove who it is must not act.
        log.critical("compute worker: %s", exc)
        raise SystemExit(f"compute worker: {exc}") from None


def _believed(name: str, message: Any, auth: Any) -> signing.Verified | None:
    """The control plane's signature on this task for this host's queue, not seen before; None otherwise."""
    queue = rpc.compute_queue(current_host())
    try:
        verified = rpc.verify(name, queue, message, auth)
    except signing.Refused as exc:
        log.warning("Refused %s on %s: %s", name, queue, exc)
        return None
    if _trust["nonces"].seen(verified.nonce):
        log.warning("Refused %s on %s: a replay of a message already acted on", name, queue)
        return None
    return verified


def control_plane_task(name: str, cls: type[M], *, on_error: Callable[[dict[str, Any], str], None]):
    """Register ``handler(decoded message)`` as the task ``name``, run only for a message the control plane
    signed for this host and that was not acted on before."""

    def register(handler: Callable[[M], None]) -> Any:
        @app.task(name=name)
        def task(message: dict[str, Any], auth: dict[str, Any] | None = None) -> None:
            verified = _believed(name, message, auth)
            if verified is None:
                return
            try:
                with request_ids.working_for(request_ids.of_message(message)):
                    decoded = _decode(cls, message, on_error=on_error)
                    if decoded is not None:
                        handler(decoded)
            finally:
                _trust["nonces"].remember(verified.nonce)

        task.__doc__ = handler.__doc__
        return task

    return register


_managers: dict[str, ComputeManager] = {}
_manager_lock = threading.Lock()
_shared: dict[str, Any] = {}


def get_manager(host: str | None = None) -> ComputeManager:
    """The manager of ``host`` (by default the host whose queue the running task came from), made on
    first use so that importing this module touches no hypervisor.

    An ordinary host has one. With COMPUTE_HOSTS, each simulated host has its own manager and driver
    (its name, its state directory, its instance disks, only its own domains; see ``compute_tasks.fleet``)
    and they share one image cache.
    """
    name = host or current_host()
    with _manager_lock:
        manager = _managers.get(name)
        if manager is None:
            if not config.hosts:
                private_dir(config.state_dir)
                manager = ComputeManager(config, load_driver(config))
            else:
                if not _shared:
                    private_dir(config.state_dir)
                    _shared["images"] = ImageCache(config.images_dir, timeout=config.http_timeout)
                host_config = config.for_host(name)
                private_dir(host_config.state_dir)
                hypervisor = load_driver(host_config)
                if config.driver == "fake":
                    # The simulated hosts reach one another for live migrations: a guest goes to the fake
                    # hypervisor whose instances directory the destination has.
                    hypervisor.peers = _shared.setdefault("fake_peers", {})  # type: ignore[attr-defined]
                    hypervisor.peers[str(host_config.instances_dir)] = hypervisor  # type: ignore[attr-defined]
                driver = HostScopedDriver(
                    hypervisor, host_config.instances_dir, reports_foreign=name == config.hosts[0]
                )
                manager = ComputeManager(host_config, driver, images=_shared["images"])  # type: ignore[arg-type]
            _managers[name] = manager
        return manager


_acting_as: contextvars.ContextVar[str | None] = contextvars.ContextVar("acting_as", default=None)


def current_host() -> str:
    """The host the running task is for: its queue is ``compute.<host>``. Outside a task, the host a fleet's
    heartbeat is beating for; the configured host otherwise."""
    if config.hosts:
        acting = _acting_as.get()
        if acting is not None:
            return acting
        task = current_task
        delivery = (getattr(task.request, "delivery_info", None) or {}) if task else {}
        queue = str(delivery.get("routing_key") or "")
        prefix = rpc.compute_queue("")
        if queue.startswith(prefix) and queue[len(prefix) :] in _host_set:
            return queue[len(prefix) :]
    return config.host


_host_set = frozenset(config.all_hosts)


# --- tasks -------------------------------------------------------------------------------------------


def _decode(cls: type[M], message: dict[str, Any], *, on_error: Callable[[dict[str, Any], str], None]) -> M | None:
    """The message as a dataclass; a message that cannot be one is reported (when it names an instance)
    and dropped, since delivering it again would not make it readable."""
    version = str(message.get("_version", "")) if isinstance(message, dict) else ""
    if version.split(".")[0] != rpc.MESSAGE_VERSION.split(".")[0]:
        log.warning("message version %r differs from ours (%s); reading it anyway", version, rpc.MESSAGE_VERSION)
    try:
        if not isinstance(message, dict):
            raise TypeError(f"expected a JSON object, got {type(message).__name__}")
        return cls.from_dict(message)
    except (TypeError, ValueError, AttributeError) as exc:
        problem = f"malformed {cls.__name__} message: {exc}"
        log.error("%s", problem)
        if isinstance(message, dict) and message.get("instance_uuid"):
            on_error(message, problem)
        return None


def _build_undecodable(message: dict[str, Any], problem: str) -> None:
    rpc.build_failed(
        BuildFailed(
            instance_uuid=str(message["instance_uuid"]),
            host=current_host(),
            request_id=str(message.get("request_id", "")),
            message=problem,
            reschedulable=False,
        )
    )


def _action_undecodable(action: str) -> Callable[[dict[str, Any], str], None]:
    def report(message: dict[str, Any], problem: str) -> None:
        rpc.action_done(
            ActionResult(
                instance_uuid=str(message["instance_uuid"]),
                host=current_host(),
                request_id=str(message.get("request_id", "")),
                action=action,
                power_state=rpc.NOSTATE,
                error=problem,
                migration_id=message["migration_id"] if isinstance(message.get("migration_id"), int) else None,
            )
        )

    return report


@control_plane_task(rpc.BUILD_AND_RUN_INSTANCE, BuildRequest, on_error=_build_undecodable)
def build_and_run_instance(request: BuildRequest) -> None:
    get_manager().build_and_run_instance(request)


def _instance_action(name: str, action: str, method: str) -> Any:
    return control_plane_task(name, InstanceRef, on_error=_action_undecodable(action))(
        lambda ref: getattr(get_manager(), method)(ref)
    )


start_instance = _instance_action(rpc.START_INSTANCE, "start", "start_instance")
stop_instance = _instance_action(rpc.STOP_INSTANCE, "stop", "stop_instance")
reboot_instance = _instance_action(rpc.REBOOT_INSTANCE, "reboot", "reboot_instance")
terminate_instance = _instance_action(rpc.TERMINATE_INSTANCE, "terminate", "terminate_instance")
pause_instance = _instance_action(rpc.PAUSE_INSTANCE, "pause", "pause_instance")
unpause_instance = _instance_action(rpc.UNPAUSE_INSTANCE, "unpause", "unpause_instance")
suspend_instance = _instance_action(rpc.SUSPEND_INSTANCE, "suspend", "suspend_instance")
resume_instance = _instance_action(rpc.RESUME_INSTANCE, "resume", "resume_instance")


# A malformed rebuild names its instance only inside ``build``: it is dropped, and the rebuild's lease ends it.
@control_plane_task(rpc.REBUILD_INSTANCE, RebuildRequest, on_error=_action_undecodable("rebuild"))
def rebuild_instance(request: RebuildRequest) -> None:
    get_manager().rebuild_instance(request)


@control_plane_task(rpc.SNAPSHOT_INSTANCE, SnapshotRequest, on_error=_action_undecodable("snapshot"))
def snapshot_instance(request: SnapshotRequest) -> None:
    get_manager().snapshot_instance(request)


# An undecodable volume request cannot say which volume it meant: the conductor's volume sweep finds the
# attachment still waiting and asks again.
# --- moving servers: resize and cold migration, shelve, rescue ---------------------------------------


@control_plane_task(rpc.MIGRATE_DISK, MigrateDiskRequest, on_error=_action_undecodable("migrate_disk"))
def migrate_disk(request: MigrateDiskRequest) -> None:
    get_manager().migrate_disk(request)


# Like a rebuild, a malformed finish_migration names its instance only inside ``build``: it is dropped.
@control_plane_task(rpc.FINISH_MIGRATION, FinishMigrationRequest, on_error=_action_undecodable("finish_migration"))
def finish_migration(request: FinishMigrationRequest) -> None:
    get_manager().finish_migration(request)


@control_plane_task(rpc.CONFIRM_MIGRATION, MigrationRef, on_error=_action_undecodable("confirm_migration"))
def confirm_migration(request: MigrationRef) -> None:
    get_manager().confirm_migration(request)


@control_plane_task(rpc.REVERT_MIGRATION, MigrationRef, on_error=_action_undecodable("revert_migration"))
def revert_migration(request: MigrationRef) -> None:
    get_manager().revert_migration(request)


@control_plane_task(
    rpc.FINISH_REVERT_MIGRATION, FinishRevertRequest, on_error=_action_undecodable("finish_revert_migration")
)
def finish_revert_migration(request: FinishRevertRequest) -> None:
    get_manager().finish_revert_migration(request)


@control_plane_task(rpc.SHELVE_INSTANCE, ShelveRequest, on_error=_action_undecodable("shelve"))
def shelve_instance(request: ShelveRequest) -> None:
    get_manager().shelve_instance(request)


shelve_offload_instance = _instance_action(rpc.SHELVE_OFFLOAD_INSTANCE, "shelve_offload", "shelve_offload_instance")


@control_plane_task(rpc.RESCUE_INSTANCE, RescueRequest, on_error=_action_undecodable("rescue"))
def rescue_instance(request: RescueRequest) -> None:
    get_manager().rescue_instance(request)


unrescue_instance = _instance_action(rpc.UNRESCUE_INSTANCE, "unrescue", "unrescue_instance")


# --- live migration ----------------------------------------------------------------------------------


# Like finish_migration, a malformed prepare names its instance only inside ``build``: it is dropped.
@control_plane_task(
    rpc.PREPARE_LIVE_MIGRATION, PrepareLiveMigrationRequest, on_error=_action_undecodable("prepare_live_migration")
)
def prepare_live_migration(request: PrepareLiveMigrationRequest) -> None:
    get_manager().prepare_live_migration(request)


@control_plane_task(rpc.LIVE_MIGRATE, LiveMigrateRequest, on_error=_action_undecodable("live_migrate"))
def live_migrate(request: LiveMigrateRequest) -> None:
    # The progress is sent from a thread of the manager's: it signs as this host, not the worker's first.
    token = _acting_as.set(current_host())
    try:
        get_manager().live_migrate(request)
    finally:
        _acting_as.reset(token)


@control_plane_task(rpc.ABORT_LIVE_MIGRATION, MigrationRef, on_error=_action_undecodable("abort_live_migration"))
def abort_live_migration(request: MigrationRef) -> None:
    get_manager().abort_live_migration(request)


# Reports nothing, so an undecodable one is only logged.
@control_plane_task(rpc.FORCE_COMPLETE_LIVE_MIGRATION, MigrationRef, on_error=lambda _message, _problem: None)
def force_complete_live_migration(request: MigrationRef) -> None:
    get_manager().force_complete_live_migration(request)


@control_plane_task(rpc.POST_LIVE_MIGRATION, MigrationRef, on_error=_action_undecodable("post_live_migration"))
def post_live_migration(request: MigrationRef) -> None:
    get_manager().post_live_migration(request)


@control_plane_task(rpc.ROLLBACK_LIVE_MIGRATION, MigrationRef, on_error=_action_undecodable("rollback_live_migration"))
def rollback_live_migration(request: MigrationRef) -> None:
    get_manager().rollback_live_migration(request)


@control_plane_task(rpc.ATTACH_VOLUME, VolumeRequest, on_error=lambda _message, _problem: None)
def attach_volume(request: VolumeRequest) -> None:
    get_manager().attach_volume(request)


@control_plane_task(rpc.DETACH_VOLUME, VolumeRequest, on_error=lambda _message, _problem: None)
def detach_volume(request: VolumeRequest) -> None:
    get_manager().detach_volume(request)


# The caller waits a few seconds at most; an undecodable request simply gets no answer.
@control_plane_task(rpc.GET_CONSOLE_OUTPUT, ConsoleOutputRequest, on_error=lambda _message, _problem: None)
def get_console_output(request: ConsoleOutputRequest) -> None:
    get_manager().get_console_output(request)


@control_plane_task(rpc.GET_DIAGNOSTICS, DiagnosticsRequest, on_error=lambda _message, _problem: None)
def get_diagnostics(request: DiagnosticsRequest) -> None:
    get_manager().get_diagnostics(request)


@control_plane_task(rpc.GET_INSTANCE_GRAPHS, GraphsRequest, on_error=lambda _message, _problem: None)
def get_instance_graphs(request: GraphsRequest) -> None:
    get_manager().get_instance_graphs(request)


# --- the network data plane -------------------------------------------------------------------------


# The host is sent its whole plan again whenever it changes, and a heartbeat that shows it behind brings
# the plan again: an undecodable one is only logged.
@control_plane_task(rpc.APPLY_NETWORK_STATE, HostNetworkPlan, on_error=lambda _message, _problem: None)
def apply_network_state(plan: HostNetworkPlan) -> None:
    get_manager().apply_network_state(plan)


# A NIC that could not be plugged in or out is logged; the port stays DOWN (or the guest keeps its NIC),
# which the API shows, and the user tries again.
@control_plane_task(rpc.ATTACH_INTERFACE, InterfaceRequest, on_error=lambda _message, _problem: None)
def attach_interface(request: InterfaceRequest) -> None:
    get_manager().attach_interface(request)


@control_plane_task(rpc.DETACH_INTERFACE, InterfaceRequest, on_error=lambda _message, _problem: None)
def detach_interface(request: InterfaceRequest) -> None:
    get_manager().detach_interface(request)


# Pre-caching is advice: a request that cannot be read is logged and dropped, a later build fetches anyway.
@control_plane_task(rpc.CACHE_IMAGES, CacheImagesRequest, on_error=lambda _message, _problem: None)
def cache_images(request: CacheImagesRequest) -> None:
    get_manager().cache_images(request)


class NetworkCheckThread(threading.Thread):
    """Reconciles the host's network to its kept plan at start, then checks it every interval: a
    bridge deleted behind the data plane's back, a dnsmasq that died or a tap that appeared is mended
    within one interval, and reported."""

    def __init__(self, manager: Callable[[], ComputeManager], interval: float) -> None:
        super().__init__(name="compute-network-check", daemon=True)
        self._manager = manager
        self._interval = interval
        self._stopped = threading.Event()

    def run(self) -> None:
        try:
            self._manager().resume_network()
        except Exception:
            log.exception("re-applying the kept network plan failed")
        while not self._stopped.wait(self._interval):
            try:
                self._manager().check_network()
            except Exception:
                log.exception("the network check failed")

    def stop(self) -> None:
        self._stopped.set()


# --- heartbeats --------------------------------------------------------------------------------------


class HeartbeatThread(threading.Thread):
    def __init__(self, beat: Callable[[], object], interval: float) -> None:
        super().__init__(name="compute-heartbeat", daemon=True)
        self._beat = beat
        self._interval = interval
        self._stopped = threading.Event()

    def run(self) -> None:
        while True:
            try:
                self._beat()
            except Exception:
                log.exception("heartbeat failed")
            if self._stopped.wait(self._interval):
                return

    def stop(self) -> None:
        self._stopped.set()


class FleetHeartbeatThread(HeartbeatThread):
    """Heartbeats of many simulated hosts from one thread, spread evenly over the interval so that the
    conductor gets a steady trickle rather than a burst."""

    def __init__(self, hosts: tuple[str, ...], beat: Callable[[str], object], interval: float) -> None:
        super().__init__(lambda: None, interval)
        self._hosts = hosts
        self._beat_host = beat

    def run(self) -> None:
        gap = self._interval / len(self._hosts)
        while True:
            for host in self._hosts:
                try:
                    self._beat_host(host)
                except Exception:
                    log.exception("heartbeat of %s failed", host)
                if self._stopped.wait(gap):
                    return


_heartbeats: HeartbeatThread | None = None
_network_check: NetworkCheckThread | None = None
_metadata_agent: Any = None
_metrics_exporter: Any = None
_graph_sampler: Any = None


def _start_graph_sampler() -> None:
    """Samples this host's guests into their graphs' rings (``compute_tasks.guest_graphs``), unless
    COMPUTE_GRAPHS_INTERVAL is 0."""
    global _graph_sampler
    if not config.graphs_interval:
        return
    from compute_tasks.guest_graphs import GraphSampler

    manager = get_manager(config.host)
    _graph_sampler = GraphSampler(manager.graphs, manager.sample_graphs, config.graphs_interval)
    _graph_sampler.start()


def _start_metrics_exporter() -> None:
    """The host's Prometheus exporter on COMPUTE_METRICS_ADDRESS, when one is set (see
    ``compute_tasks.host_metrics``). A host that cannot bind it goes on working, and says so."""
    global _metrics_exporter
    if config.metrics_address is None:
        return
    from compute_tasks import host_metrics

    manager = get_manager(config.host)
    host_metrics.registry.register(
        host_metrics.HostCollector(config.host, manager.driver.domain_stats, manager.images.usage)  # type: ignore[attr-defined]
    )
    try:
        _metrics_exporter = host_metrics.MetricsExporter(config.metrics_address, config.metrics_token)
    except OSError:
        log.exception("the metrics exporter could not listen on %s port %d", *config.metrics_address)
        return
    _metrics_exporter.start()


def _start_metadata_agent() -> None:
    """The metadata proxies of this host's networks hand guests' requests to this agent, which signs them
    as this host and asks the control plane (see ``compute_tasks.metadata_agent``)."""
    global _metadata_agent
    socket_path = getattr(get_manager(config.host).network, "metadata_socket", None)
    if socket_path is None:
        return
    from compute_tasks.metadata_agent import MetadataAgent

    group = getattr(get_manager(config.host).network.dhcp, "group", None)
    _metadata_agent = MetadataAgent(
        socket_path,
        config.metadata_url,
        lambda: credentials().signer(config.host),
        timeout=config.metadata_timeout,
        group=group,
    )
    try:
        _metadata_agent.start()
    except OSError:
        log.exception("the metadata agent could not start")
        _metadata_agent = None


def _fleet_heartbeat(host: str) -> None:
    token = _acting_as.set(host)  # the beat is signed as the host it is about
    try:
        get_manager(host).heartbeat()
    finally:
        _acting_as.reset(token)


@signals.worker_ready.connect
def _start_heartbeats(sender: Any = None, **_: Any) -> None:
    global _heartbeats
    if getattr(sender, "app", app) is not app or _heartbeats is not None:
        return
    if config.hosts:
        _heartbeats = FleetHeartbeatThread(config.hosts, _fleet_heartbeat, config.heartbeat_interval)
        _heartbeats.start()
        if config.metrics_address is not None:
            log.warning("COMPUTE_METRICS_ADDRESS is ignored with COMPUTE_HOSTS: simulated hosts export no metrics")
        log.info(
            "%d simulated compute hosts ready on queues %s ... %s (driver %s); each beats every %gs",
            len(config.hosts),
            rpc.compute_queue(config.hosts[0]),
            rpc.compute_queue(config.hosts[-1]),
            config.driver,
            config.heartbeat_interval,
        )
        return
    _heartbeats = HeartbeatThread(lambda: get_manager(config.host).heartbeat(), config.heartbeat_interval)
    _heartbeats.start()
    global _network_check
    _network_check = NetworkCheckThread(lambda: get_manager(config.host), config.network_check_interval)
    _network_check.start()
    _start_metadata_agent()
    _start_metrics_exporter()
    _start_graph_sampler()
    log.info(
        "compute host %s ready on queue %s (driver %s, data plane %s); heartbeat every %gs",
        config.host,
        rpc.compute_queue(config.host),
        config.driver,
        config.dataplane,
        config.heartbeat_interval,
    )


@signals.worker_shutdown.connect
def _close_drivers(**_: Any) -> None:
    """Close hypervisor connections while the interpreter can still do it cleanly."""
    with _manager_lock:
        for manager in _managers.values():
            manager.driver.close()


@signals.worker_shutting_down.connect
def _stop_heartbeats(**_: Any) -> None:
    if _heartbeats is not None:
        _heartbeats.stop()
    if _network_check is not None:
        _network_check.stop()
    if _metadata_agent is not None:
        _metadata_agent.stop()
    if _metrics_exporter is not None:
        _metrics_exporter.stop()
    if _graph_sampler is not None:
        _graph_sampler.stop()
        _graph_sampler.join(timeout=5)  # its last save
