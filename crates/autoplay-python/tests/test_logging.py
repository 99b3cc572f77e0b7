"""What a user who configured no logging sees: connection failures and the traceback of
a raising callback reach stderr (Python's last-resort handler prints WARNING and above
when no handler is configured; the package adds no NullHandler to swallow them)."""

from __future__ import annotations

import subprocess
import textwrap

from conftest import PYTHON, Connector, free_port


def run_script(source: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-c", textwrap.dedent(source), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_connection_failures_reach_stderr_without_logging_configured() -> None:
    url = f"http://127.0.0.1:{free_port()}/stream/test"
    proc = run_script(
        """
        import sys, time
        from autoplay_sdk import ConnectorClient
        client = ConnectorClient(url=sys.argv[1], token="k", initial_backoff_s=0.05,
                                 max_backoff_s=0.1)
        client.run_in_background()
        time.sleep(1.0)
        client.stop()
        print("stopped")
        """,
        url,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "stopped\n"
    # Retrying goes on (no max_retries), and every failed attempt says so.
    lines = [l for l in proc.stderr.splitlines() if l.startswith("reconnecting in ")]
    assert len(lines) >= 2, proc.stderr
    assert "attempt=1" in lines[0] and "127.0.0.1" in lines[0], lines[0]


def test_a_raising_callback_shows_its_traceback_without_logging_configured(
    connector: Connector,
) -> None:
    proc = subprocess.Popen(
        [PYTHON, "-c", textwrap.dedent(
            """
            import sys, threading
            from autoplay_sdk import ConnectorClient

            connected, done = threading.Event(), threading.Event()

            def on_actions(payload):
                if payload.session_id == "ps_bad":
                    raise ValueError("kaboom from the callback")
                done.set()

            with ConnectorClient(url=sys.argv[1], token=sys.argv[2],
                                 on_connect=connected.set) as client:
                client.on_actions(on_actions).run_in_background()
                connected.wait(10)
                print("ready", flush=True)
                assert done.wait(10), "the stream did not go on after the exception"
            print("done")
            """
        ), connector.url, connector.key],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        connector.post_actions("ps_bad")
        connector.post_actions("ps_good")
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out == "done\n"
    assert "on_actions callback raised an exception; the stream goes on" in err, err
    assert "Traceback (most recent call last)" in err, err
    assert "in on_actions" in err and "ValueError: kaboom from the callback" in err, err


def test_a_refused_key_is_logged_as_well_as_raised(connector: Connector) -> None:
    proc = run_script(
        """
        import sys
        from autoplay_sdk import ConnectorClient, FatalStatusError
        try:
            ConnectorClient(url=sys.argv[1], token="wrong").run()
        except FatalStatusError as e:
            print("raised", e.status_code)
        """,
        connector.url,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "raised 401\n"
    assert "fatal status, not retrying" in proc.stderr and "status=401" in proc.stderr, proc.stderr
    assert "wrong" not in proc.stderr  # the token is never logged
