"""A TLS-only cluster: `dask scheduler --protocol tls` + two `dask worker`s on 127.0.0.1 (issue 11).

The certificates come from ``deploy/tls/make-certs.sh``, the script ``deploy/tls/README.md``
tells users to run.  Through ``--scheduler tls://...`` with ``--tls-ca-file/--tls-cert/--tls-key``
the pipeline must write the same products, byte for byte, as a synchronous run; a plain-TCP
client and a client whose certificate another CA signed must be refused; and a missing
certificate file must be a one-line CLI error naming it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from campaign_helpers import product_content

from coron3_dask.cli import main

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="make-certs.sh needs the openssl command"),
]
BIN = Path(sys.executable).parent
MAKE_CERTS = Path(__file__).parents[2] / "deploy" / "tls" / "make-certs.sh"


def _make_certs(directory: Path) -> Path:
    subprocess.run(
        ["bash", str(MAKE_CERTS), str(directory), "localhost", "127.0.0.1"], check=True, capture_output=True, timeout=60
    )
    return directory


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    return _make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def other_certs(tmp_path_factory) -> Path:
    """Certificates of another CA: valid, but not this cluster's."""
    return _make_certs(tmp_path_factory.mktemp("other-ca"))


def _security(ca: Path, cert_dir: Path):
    from distributed import Security

    return Security(
        tls_ca_file=str(ca / "ca.pem"),
        tls_client_cert=str(cert_dir / "client.pem"),
        tls_client_key=str(cert_dir / "client.key"),
        require_encryption=True,
    )


@pytest.fixture(scope="module")
def tls_cluster(certs, tmp_path_factory):
    """A TLS-only scheduler (encryption required) with two workers: its address and log; killed at teardown."""
    work = tmp_path_factory.mktemp("tls-cluster")
    sched_file = work / "scheduler.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True"}
    tls = ["--tls-ca-file", str(certs / "ca.pem")]
    procs = []

    def start(argv: list[str], log: str) -> None:
        with (work / log).open("ab") as stderr:
            command = [str(BIN / "dask"), *argv]
            procs.append(
                subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
            )

    try:
        scheduler = "scheduler --protocol tls --host 127.0.0.1 --port 0 --dashboard-address 127.0.0.1:0".split()
        scheduler_tls = ["--tls-cert", str(certs / "scheduler.pem"), "--tls-key", str(certs / "scheduler.key")]
        start([*scheduler, "--scheduler-file", str(sched_file), *tls, *scheduler_tls], "scheduler.log")
        address, deadline = "", time.monotonic() + 60
        while not address and time.monotonic() < deadline:
            time.sleep(0.1)
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tls://127.0.0.1:"), (work / "scheduler.log").read_text()
        worker = "--host 127.0.0.1 --nthreads 1 --memory-limit 2GiB --no-dashboard".split()
        worker_tls = ["--tls-cert", str(certs / "worker.pem"), "--tls-key", str(certs / "worker.key")]
        for i in range(2):
            name = ["--name", f"w{i}", "--local-directory", str(work)]
            start(["worker", address, *worker, *name, *tls, *worker_tls], f"worker{i}.log")
        from distributed import Client

        with Client(address, security=_security(certs, certs), timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
            assert all(w.startswith("tls://") for w in client.scheduler_info()["workers"])
        yield address, work / "scheduler.log"
    finally:
        for p in procs:  # a nanny and its worker share a process group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
        for p in procs:
            p.wait(timeout=20)


@pytest.fixture(scope="module")
def programme(tmp_path_factory):
    from coron3_dask.simulate import simulate_programme

    return simulate_programme(tmp_path_factory.mktemp("tls-programme"), n_science_ints=2, n_ref_ints=2, n_dither=1)


def _argv(sim, out: Path, *execution: str) -> list[str]:
    return ["run", str(sim.asn_path), "--psfmask", str(sim.psfmask_path), "-o", str(out), "--no-progress", *execution]


def _tls_options(ca: Path, cert: Path, key: Path) -> list[str]:
    return ["--tls-ca-file", str(ca), "--tls-cert", str(cert), "--tls-key", str(key)]


def test_tls_cluster_products_byte_identical_to_synchronous(tls_cluster, certs, programme, tmp_path):
    assert main(_argv(programme, tmp_path / "sync", "--scheduler", "synchronous")) == 0
    options = _tls_options(certs / "ca.pem", certs / "client.pem", certs / "client.key")
    assert main(_argv(programme, tmp_path / "tls", "--scheduler", tls_cluster[0], *options)) == 0
    reference = product_content(tmp_path / "sync")
    assert len({name for name, _ in reference}) == 9
    assert product_content(tmp_path / "tls") == reference


def _logged(log: Path, text: str) -> bool:
    """Whether ``text`` appears in the scheduler's log within a few seconds."""
    deadline = time.monotonic() + 5
    while text not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    return text in log.read_text()


def test_plain_tcp_client_is_refused(tls_cluster):
    from distributed import Client

    address, log = tls_cluster
    with pytest.raises(OSError), Client(address.replace("tls://", "tcp://"), timeout=5):
        pass
    assert _logged(log, "WRONG_VERSION_NUMBER")  # the scheduler got a non-TLS hello and dropped it


@pytest.mark.parametrize("trusted", ["cluster-ca", "other-ca"])
def test_client_certificate_of_another_ca_is_refused(tls_cluster, certs, other_certs, trusted):
    """cluster-ca: the client trusts the scheduler, the scheduler refuses the client's certificate;
    other-ca: neither side trusts the other."""
    from distributed import Client

    address, log = tls_cluster
    security = _security(certs if trusted == "cluster-ca" else other_certs, other_certs)
    # what the client sees varies (an "unknown ca" alert, EOF, "TLS certificate does not match")
    with pytest.raises(OSError), Client(address, security=security, timeout=5):
        pass
    if trusted == "cluster-ca":  # the scheduler itself rejected the certificate
        assert _logged(log, "certificate verify failed: unable to get local issuer certificate")


@pytest.mark.parametrize("missing", ["--tls-ca-file", "--tls-cert", "--tls-key"])
def test_missing_certificate_file_is_a_one_line_error(certs, programme, tmp_path, capsys, missing):
    files = {"--tls-ca-file": certs / "ca.pem", "--tls-cert": certs / "client.pem", "--tls-key": certs / "client.key"}
    files[missing] = tmp_path / "absent.pem"
    options = _tls_options(*files.values())
    # a port nothing listens on: the error comes before any connection is tried
    assert main(_argv(programme, tmp_path / "out", "--scheduler", "tls://127.0.0.1:9", *options)) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [f"coron3-dask: error: {missing} {tmp_path / 'absent.pem'}: no such file"]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
