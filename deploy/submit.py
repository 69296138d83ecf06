"""The pipeline's submission inside a cluster: what the Kubernetes Job ``darkpool-submit`` runs.

``darkpool k8s submit --args-file FILE --flink-rest-url URL`` reads the pipeline's arguments from
the file the Job mounts from the ConfigMap ``darkpool-pipeline`` (one argument per line; blank lines
and ``#`` comments skipped), checks them with the pipeline's own parser, waits until the Flink
REST API, the Beam job server and the expansion service answer, then submits the pipeline detached
(:func:`pipeline.main.run`) and returns once Flink runs the job. When a job of the same
``--job_name`` already runs, it submits nothing and succeeds (a re-run Job never starts a second copy).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import redirect_stderr
from io import StringIO
from pathlib import Path

from darkpool.errors import DarkpoolError
from darkpool.stack.flink import TERMINAL_STATES, get_json
from darkpool.stack.process import port_open


def read_args(text: str) -> list[str]:
    """The arguments of an args file: one per line, surrounding blanks stripped, blank and ``#`` lines skipped."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def flag_value(argv: Sequence[str], flag: str) -> str | None:
    """The last value of ``flag`` in argv (``--flag=value`` or ``--flag value``), or None."""
    value = None
    for position, arg in enumerate(argv):
        if arg.startswith(f"{flag}="):
            value = arg.split("=", 1)[1]
        elif arg == flag and position + 1 < len(argv) and not argv[position + 1].startswith("--"):
            value = argv[position + 1]
    return value


def parse_args_or_error(argv: Sequence[str]):
    """The pipeline's own parse of argv: (PipelineConfig, Beam arguments); a DarkpoolError with the
    parser's message when it rejects them (instead of argparse's exit)."""
    from pipeline.options import parse_pipeline_args  # deploy may import pipeline (tests/test_layers.py)

    errors = StringIO()
    try:
        with redirect_stderr(errors):
            return parse_pipeline_args(list(argv))
    except SystemExit as exc:
        message = errors.getvalue().strip().splitlines()
        raise DarkpoolError(f"the pipeline rejects its arguments: {message[-1] if message else exc}",
                            hint="fix the args file (`darkpool run --help` lists the pipeline's flags)") from exc


def host_port(address: str) -> tuple[str, int]:
    """``host:port`` -> (host, port)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise DarkpoolError(f"not a host:port address: {address!r}")
    return host, int(port)


def wait_until(what: str, check: Callable[[], bool], timeout: float, interval: float = 2.0,
               say: Callable[[str], None] = print) -> None:
    """Poll ``check`` until it is true, saying what it waits for every 10 s; DarkpoolError after ``timeout``."""
    started = time.monotonic()
    last_said = -10.0
    while not check():
        waited = time.monotonic() - started
        if waited > timeout:
            raise DarkpoolError(f"{what} did not answer within {timeout:.0f} s",
                                hint="`kubectl get pods` and `kubectl logs` show why")
        if waited - last_said >= 10.0:
            say(f"waiting for {what} ({waited:.0f} s) ...")
            last_said = waited
        time.sleep(interval)
    say(f"{what} answers")


def flink_jobs(rest_url: str) -> list[dict]:
    """The session cluster's jobs (id, name, state)."""
    return get_json(f"{rest_url.rstrip('/')}/jobs/overview").get("jobs", [])


def running_job(rest_url: str, name: str) -> dict | None:
    """The job of that name that has not ended, if any."""
    return next((job for job in flink_jobs(rest_url)
                 if job.get("name") == name and job.get("state") not in TERMINAL_STATES), None)


def submit(args_file: Path, rest_url: str, timeout: float = 600.0, say: Callable[[str], None] = print) -> str:
    """Submit the pipeline of ``args_file`` to the session cluster at ``rest_url``; returns the Flink job id."""
    argv = read_args(args_file.read_text())
    config, _beam_args = parse_args_or_error(argv)
    job_name = flag_value(argv, "--job_name")
    job_endpoint = flag_value(argv, "--job_endpoint")
    if not job_name or not job_endpoint:
        raise DarkpoolError(f"{args_file} needs --job_name and --job_endpoint (a submission to the job server)")
    rest_url = rest_url.rstrip("/")

    def flink_answers() -> bool:
        try:
            get_json(f"{rest_url}/overview", timeout=3.0, attempts=1)
            return True
        except DarkpoolError:
            return False

    wait_until(f"the Flink REST API at {rest_url}", flink_answers, timeout, say=say)
    for what, address in (("the Beam job server", job_endpoint), ("the expansion service", config.expansion_service)):
        host, port = host_port(address)
        wait_until(f"{what} at {address}", lambda h=host, p=port: port_open(h, p, timeout=2.0), timeout, say=say)

    existing = running_job(rest_url, job_name)
    if existing is not None:
        say(f"job {job_name!r} already runs on Flink ({existing['jid']}, {existing['state']}): nothing to submit")
        return existing["jid"]
    before = {job["jid"] for job in flink_jobs(rest_url)}

    from pipeline.main import run  # noqa: PLC0415 (Beam imports are slow; only when submitting)

    say(f"submitting {job_name} to {job_endpoint} ({len(argv)} arguments from {args_file})")
    run(argv)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [job for job in flink_jobs(rest_url) if job["jid"] not in before and job.get("name") == job_name]
        if new:
            if new[0]["state"] in TERMINAL_STATES:
                raise DarkpoolError(f"job {new[0]['jid']} ended at once ({new[0]['state']})",
                                    hint=f"{rest_url}/#/job/completed/{new[0]['jid']}/exceptions")
            say(f"submitted {job_name}: Flink job {new[0]['jid']} ({new[0]['state']})")
            return new[0]["jid"]
        time.sleep(2.0)
    raise DarkpoolError(f"the job {job_name!r} did not appear on Flink within {timeout:.0f} s",
                        hint="`kubectl logs deploy/beam-job-server`")
