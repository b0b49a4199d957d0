"""The local system: Triton workers (one process per replica per level), router and Envoy on loopback.

The same parts as in Kubernetes, as child processes: a worker is the worker image's
entry (render the level's model repository, run tritonserver), the router is
`python -m argus.router`, Envoy runs the bootstrap from argus.adapters.envoy_config.
Worker endpoints are published to the router through an endpoints file, as the
EndpointSlices of each level's Service are in a cluster.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from argus.adapters.envoy_config import EnvoySettings, build_bootstrap
from argus.contract import WORKER_STOP_GRACE_S, replica_endpoint
from argus.local import prometheus
from argus.local.supervisor import Backoff, PortPool, Supervisor, describe_exit, wait_http
from argus.router.settings import RouterSettings, ServicePredictor
from argus.spec import T2IServiceSpec
from argus.contract import TritonPorts
from argus.worker.repository import render_repository, triton_command
from argus.worker.settings import WorkerSettings

STATE_FILE = "state.json"
FRONT_DOOR = ("router", "envoy")  # while either is down the service answers nothing: Ready is False
SUPERVISE_EVERY_S = 0.2

log = logging.getLogger("argus.local")


@dataclass
class Replica:
    """One worker process: the level it loaded (its Triton model), and the level it serves."""

    name: str
    level: str
    ports: TritonPorts
    streak: int = 0  # quick exits in a row of the replicas this one replaced (argus.local.supervisor.Backoff)
    replace_at: float | None = None  # set once it is found dead: when its replacement starts
    ran_s: float = 0.0  # how long it ran, once it is found dead
    serving: str | None = None  # switched in place to another level of its weights (None: its own level)

    @property
    def grpc(self) -> str:
        """gRPC address for the router."""
        return f"127.0.0.1:{self.ports.grpc}"

    @property
    def serves(self) -> str:
        """The level the router sends it requests at."""
        return self.serving or self.level

    @property
    def endpoint(self) -> str:
        """Its entry in the router's endpoints file: `host:port`, or `host:port@model` once switched in place
        (the router then calls the model it loaded, with the level per request)."""
        return replica_endpoint(self.grpc, self.level, self.serves)


@dataclass
class LocalSystem:
    """One T2IService running as local processes under `workdir`."""

    service: str
    spec: T2IServiceSpec
    workdir: Path
    sizes: tuple[str, ...] = ("64x64",)
    ready_timeout_s: float = 180.0
    worker_threads: int = 1  # CPU threads per worker process (see start_worker)
    timeout_slos: float = 2.0  # the router gives up on a request after this many latency SLOs (start_router)
    predictor: Path | None = None  # per-prompt level predictor artifact for the router (None: full quality)
    supervisor: Supervisor = field(init=False)
    replicas: dict[str, Replica] = field(default_factory=dict)
    ready: set[str] = field(default_factory=set)  # replica names that passed the readiness probe
    start_s: list[float] = field(default_factory=list)  # measured seconds from a replica's start to ready, in order
    ports: dict[str, int] = field(default_factory=dict)
    port_pool: PortPool = field(default_factory=PortPool)  # every listening port the system hands out
    status: dict = field(default_factory=dict)  # the control loop's status (written into state.json)
    backoff: Backoff = field(default_factory=Backoff)  # restarts of every process (workers are replaced)
    loops: dict = field(default_factory=dict)  # in-process loops watched like processes: name -> .watch(), .info()
    _seq: int = 0

    def __post_init__(self):
        self.workdir = Path(self.workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.supervisor = Supervisor(self.workdir / "logs")
        (self.workdir / "policy").mkdir(exist_ok=True)
        self.latent_dir = self.workdir / "latents"
        self.latent_dir.mkdir(exist_ok=True)
        self._state_lock = threading.Lock()
        self._halt = threading.Event()
        self._supervising: threading.Thread | None = None

    # ---- workers -------------------------------------------------------------------------
    def worker_settings(self, level: str) -> WorkerSettings:
        """Settings of a worker of `level`, from the service spec."""
        m = self.spec.model
        return WorkerSettings(level=level, steps=m.steps, levels=tuple(self.spec.levels), model_name=m.name,
                              weights_path=m.weights_path, guidance_scale=m.guidance_scale,
                              latent_store=str(self.latent_dir) if self.spec.cache.enabled else None,
                              latent_store_bytes=self.spec.cache.max_bytes)

    def start_worker(self, level: str, wait: bool = True, *, restarts: int = 0, streak: int = 0) -> Replica:
        """Start one Triton process serving `level`; wait until it is ready unless told not to.
        `restarts`, `streak`: carried over from the replica it replaces."""
        self._seq += 1
        name = f"worker-{level}-{self._seq}"
        wdir = self.workdir / "workers" / name
        repo = render_repository(wdir / "models", level)
        ports = TritonPorts(http=self.port_pool.take(), grpc=self.port_pool.take(), metrics=self.port_pool.take())
        cmd, env = triton_command(repo, ports, wdir)
        env.update(self.worker_settings(level).to_env())
        env["ARGUS_LEVEL"] = level
        # A process slot stands for one GPU; on a CPU it gets one core's worth of threads. Without this
        # every replica starts one OpenMP thread per core, and oversubscribed spin-waiting made a
        # 2-second image take ~50 s with two replicas on two cores (measured).
        env.update({k: str(self.worker_threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")})
        child = self.supervisor.start(name, cmd, env, restarts=restarts)
        rep = Replica(name, level, ports, streak=streak)
        self.replicas[name] = rep
        if wait:
            self.wait_worker(rep, child)
            self.ready.add(name)
            self.start_s.append(time.monotonic() - child.started)
        self.publish_endpoints()
        return rep

    def wait_worker(self, rep: Replica, child=None) -> None:
        """Block until the replica's model is ready."""
        child = child or self.supervisor.children.get(rep.name)
        try:
            wait_http(f"http://127.0.0.1:{rep.ports.http}/v2/models/{rep.level}/ready", self.ready_timeout_s, child)
        except (RuntimeError, TimeoutError) as e:
            raise RuntimeError(f"{e}\n--- {rep.name} log ---\n{self.supervisor.tail(rep.name)}") from None

    def switch_worker(self, name: str, level: str) -> None:
        """Serve `level` on replica `name` from now on, without a restart: a level of the weights it loaded
        (the worker serves any such level per request, argus.worker.service). The requests it accepted at its
        old level finish there; the router sends it the new level's requests once it rereads the endpoints."""
        rep = self.replicas[name]
        old = rep.serves
        rep.serving = None if level == rep.level else level
        self.publish_endpoints()
        self.event(f"{name} switched in place from {old} to {level}")

    def stop_worker(self, name: str) -> None:
        """Unpublish, then stop one replica (the router stops sending before it goes)."""
        self.stop_workers([name])

    def stop_workers(self, names: list[str], drain_s: float = 0.0, sleep=time.sleep) -> None:
        """Unpublish the replicas, wait `drain_s` (the router reloads its endpoints), then stop each: it
        finishes the requests it accepted (argus.contract.WORKER_DRAIN_S), killed after WORKER_STOP_GRACE_S,
        as a pod in its termination grace period. A stopped replica's slot is free once it has exited."""
        for name in names:
            self.replicas.pop(name, None)
            self.ready.discard(name)
        self.publish_endpoints()
        if drain_s > 0:
            sleep(drain_s)
        for name in names:
            self.supervisor.stop(name, timeout=WORKER_STOP_GRACE_S)

    def tick(self) -> list[str]:
        """Probe starting replicas, replace dead ones after their backoff (reported once each, `event`);
        return the replicas that became ready (for logs).

        A dead replica is replaced by a new process with new ports (a new pod, not a restarted container:
        the router drops the dead address). It keeps its place in `replicas` (not ready, unpublished)
        until then, so the actuator does not count its slot as free.
        """
        import urllib.request

        events = []
        changed = False
        for name, rep in list(self.replicas.items()):
            child = self.supervisor.children.get(name)
            if child is None or not child.alive():
                now = time.monotonic()
                if rep.replace_at is None:  # just found dead
                    rep.ran_s = now - child.started if child else 0.0
                    rep.streak = self.backoff.streak(rep.streak, rep.ran_s)
                    rep.replace_at = now + self.backoff.delay(rep.streak)
                    self.ready.discard(name)
                    changed = True
                if now < rep.replace_at:
                    continue
                self.replicas.pop(name, None)
                self.supervisor.stop(name)  # reaps stragglers of its group (Triton stubs)
                restarts = (child.restarts if child else 0) + 1
                new = self.start_worker(rep.serves, wait=False, restarts=restarts, streak=rep.streak)
                self.event(f"{name} exited ({describe_exit(child.popen.returncode if child else None)}) after "
                           f"{rep.ran_s:.1f} s: replaced by {new.name} after {self.backoff.delay(rep.streak):g} s "
                           f"(restart {restarts})")
                changed = True
                continue
            if name not in self.ready:
                try:
                    url = f"http://127.0.0.1:{rep.ports.http}/v2/models/{rep.level}/ready"
                    with urllib.request.urlopen(url, timeout=1) as r:
                        if r.status == 200:
                            self.ready.add(name)
                            self.start_s.append(time.monotonic() - child.started)
                            events.append(f"{name} ready")
                except OSError:
                    pass
        if events or changed:
            self.publish_endpoints()
        return events

    def counts(self, ready_only: bool = False) -> dict[str, int]:
        """Replicas per level (all started, or only ready ones)."""
        out: dict[str, int] = {}
        for name, rep in self.replicas.items():
            if not ready_only or name in self.ready:
                out[rep.serves] = out.get(rep.serves, 0) + 1
        return out

    def publish_endpoints(self) -> None:
        """Write the ready replicas per level for the router (atomically)."""
        levels: dict[str, list[str]] = {}
        for rep in self.replicas.values():
            child = self.supervisor.children.get(rep.name)
            if rep.name in self.ready and child is not None and child.alive():
                levels.setdefault(rep.serves, []).append(rep.endpoint)
        _atomic_write(self.workdir / "endpoints.json", json.dumps({self.service: levels}, indent=1))
        if "prometheus" in self.ports:
            prometheus.write_targets(self.workdir / "worker-targets.json", {
                n: (r.level, f"127.0.0.1:{r.ports.metrics}") for n, r in self.replicas.items()})
        self.write_state()

    # ---- front door ------------------------------------------------------------------------
    def start_router(self) -> None:
        """Start the router process and wait for /healthz."""
        port = self.ports.setdefault("router", self.port_pool.take())
        s = RouterSettings(port=port, policy_dir=self.workdir / "policy",
                           endpoints_file=self.workdir / "endpoints.json", default_service=self.service,
                           sizes=self.sizes, default_size=self.sizes[0],
                           # A reply later than a few SLOs is worth nothing, and computing it takes the slot
                           # from requests that can still make it: with the router's default 120 s, a burst
                           # left workers computing requests whose clients had given up (measured: served
                           # throughput fell to ~0 for 30 s). Triton drops queued requests whose call ended.
                           timeout_s=self.timeout_slos * self.spec.latency_slo, predictors=self.router_predictors())
        url = f"http://127.0.0.1:{port}/healthz"
        # The predictor's sentence encoder gets one thread that sleeps when idle: torch's default (one
        # spin-waiting OpenMP thread per core) took CPU from the worker slots after every embedding.
        env = {**s.to_env(), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
        child = self.supervisor.start("router", [sys.executable, "-m", "argus.router"], env,
                                      restart=self.backoff, ready_url=url)
        wait_http(url, 60, child)

    def router_predictors(self) -> dict[str, ServicePredictor]:
        """The router's predictor setting for this service: checked against the workers' levels, model and N."""
        if self.predictor is None:
            return {}
        from argus.worker.tiny import tiny_identity

        m = self.spec.model
        return {self.service: ServicePredictor(
            Path(self.predictor), tuple(self.spec.levels), m.name if m.weights_path else tiny_identity(), m.steps,
            self.latent_dir if self.spec.cache.enabled else None)}

    def start_envoy(self) -> None:
        """Start Envoy in front of the router and wait until it proxies."""
        for k in ("envoy", "envoy_stats", "envoy_admin"):
            self.ports.setdefault(k, self.port_pool.take())
        cfg = EnvoySettings(listen_port=self.ports["envoy"], stats_port=self.ports["envoy_stats"],
                            admin_port=self.ports["envoy_admin"], router_port=self.ports["router"],
                            access_log_path=str(self.workdir / "logs" / "envoy-access.log"))
        path = self.workdir / "envoy.yaml"
        path.write_text(yaml.safe_dump(build_bootstrap(cfg), sort_keys=False))
        envoy = Path(sys.executable).parent / "envoy"
        cmd = [str(envoy if envoy.exists() else "envoy"), "-c", str(path), "--log-level", "warn",
               "--base-id", str(self.ports["envoy"])]
        # Envoy's /healthz goes to the router: Envoy itself is up when its admin interface answers.
        child = self.supervisor.start("envoy", cmd, restart=self.backoff,
                                      ready_url=f"http://127.0.0.1:{self.ports['envoy_admin']}/ready")
        wait_http(f"http://127.0.0.1:{self.ports['envoy']}/healthz", 30, child)

    def start_prometheus(self) -> None:
        """Start Prometheus scraping the router, Envoy and the workers; wait until it is ready."""
        port = self.ports.setdefault("prometheus", self.port_pool.take())
        cfg_path = self.workdir / "prometheus.yml"
        prometheus.write_config(cfg_path, prometheus.build_config(
            router=f"127.0.0.1:{self.ports['router']}", envoy_stats=f"127.0.0.1:{self.ports['envoy_stats']}",
            targets_file=self.workdir / "worker-targets.json"))
        self.publish_endpoints()
        data = self.workdir / "prometheus-data"
        data.mkdir(exist_ok=True)
        child = self.supervisor.start("prometheus", prometheus.command(cfg_path, data, f"127.0.0.1:{port}"),
                                      restart=self.backoff, ready_url=f"{self.prometheus_url}/-/ready")
        wait_http(f"{self.prometheus_url}/-/ready", 60, child)

    @property
    def prometheus_url(self) -> str:
        """Where the control loop reads metrics."""
        return f"http://127.0.0.1:{self.ports['prometheus']}"

    @property
    def url(self) -> str:
        """Where clients send requests (Envoy)."""
        return f"http://127.0.0.1:{self.ports['envoy']}"

    def start(self, initial: dict[str, int], with_prometheus: bool = False) -> None:
        """Start workers per `initial` ({level: replicas}) in parallel, then the router, Envoy (and Prometheus);
        from then on restart whichever of those exits (`supervise`, in a thread)."""
        reps = [self.start_worker(level, wait=False) for level, n in initial.items() for _ in range(n)]
        for rep in reps:
            self.wait_worker(rep)
            self.ready.add(rep.name)
        self.publish_endpoints()
        self.start_router()
        self.start_envoy()
        if with_prometheus:
            self.start_prometheus()
        self.write_state()
        self.start_supervision()

    # ---- supervision ---------------------------------------------------------------------
    def start_supervision(self) -> None:
        """Run `supervise` every SUPERVISE_EVERY_S in a daemon thread until `stop`."""
        self._halt.clear()
        self._supervising = threading.Thread(target=self._supervise_loop, name="argus-supervise", daemon=True)
        self._supervising.start()

    def _supervise_loop(self) -> None:
        while not self._halt.wait(SUPERVISE_EVERY_S):
            try:
                self.supervise()
            except Exception:  # supervision must outlive anything one pass throws
                log.exception("supervision pass failed")

    def supervise(self) -> list[str]:
        """Restart exited front-door processes and watched loops (workers: the control loop's `tick`); log each
        restart once; when the front door goes down or comes back, Ready follows at once."""
        before = self.front_door_ready()
        events = self.supervisor.supervise()
        for loop in list(self.loops.values()):
            events += loop.watch()
        for e in events:
            self.event(e)
        if events or self.front_door_ready() != before:
            self.refresh_ready()
        return events

    def event(self, text: str) -> None:
        """Report something the runtime did (a restart) once, on the console and in the log."""
        log.warning(text)
        print(f"[argus] {text}", flush=True)

    def front_door_ready(self) -> bool:
        """The router and Envoy run and answer (no request can be served while either is down)."""
        return all((c := self.supervisor.children.get(n)) is not None and c.alive() and c.ready for n in FRONT_DOOR)

    def down(self) -> list[str]:
        """Front-door processes not serving now."""
        return [n for n in FRONT_DOOR if not ((c := self.supervisor.children.get(n)) and c.alive() and c.ready)]

    def refresh_ready(self) -> None:
        """Recompute Ready in the control loop's last status from the front door now, and write the state."""
        cond = (self.status or {}).get("conditions")
        if cond is not None and "ReplicasReady" in cond:
            down = self.down()
            cond["Ready"] = cond["ReplicasReady"] and not down
            cond["ReadyReason"] = (f"{'/'.join(down)} down" if down
                                   else None if cond["ReplicasReady"] else "replicas not ready")
        self.write_state()

    def processes(self) -> dict[str, dict]:
        """Every supervised process and watched loop: state, restarts, pid, uptime, last exit."""
        out = {}
        for name, c in list(self.supervisor.children.items()):
            info = c.info()
            if name in self.replicas:
                rep = self.replicas[name]
                info["level"], info["loaded"] = rep.serves, rep.level
                info["state"] = ("running" if name in self.ready else "starting") if c.alive() else "backoff"
            out[name] = info
        for name, loop in list(self.loops.items()):
            out[name] = loop.info()
        return out

    def write_state(self) -> None:
        """Record ports and replicas so `argus generate`/`argus status` can find the system."""
        state = {"service": self.service, "pid": os.getpid(), "url": self.url if "envoy" in self.ports else None,
                 "prometheus": self.prometheus_url if "prometheus" in self.ports else None, "ports": self.ports,
                 "latency_slo_s": self.spec.latency_slo,
                 "replicas": {n: {"level": r.serves, "loaded": r.level, "grpc": r.grpc, "http": r.ports.http,
                                  "ready": n in self.ready, "metrics": r.ports.metrics}
                              for n, r in list(self.replicas.items())},
                 "processes": self.processes(),
                 "status": self.status,
                 "workdir": str(self.workdir), "updated": time.time()}
        with self._state_lock:  # written from the control loop and the supervision thread
            _atomic_write(self.workdir / STATE_FILE, json.dumps(state, indent=1))

    def stop(self) -> None:
        """Stop supervising, then stop everything and remove the state file."""
        self._halt.set()
        if self._supervising is not None and self._supervising is not threading.current_thread():
            self._supervising.join(10)
        self.supervisor.stop_all()
        (self.workdir / STATE_FILE).unlink(missing_ok=True)


def read_state(workdir: Path) -> dict:
    """The state of a running local system, or a clear error when none runs."""
    path = Path(workdir) / STATE_FILE
    if not path.exists():
        raise FileNotFoundError(f"no running system found ({path} missing): start one with `argus up`")
    return json.loads(path.read_text())


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
