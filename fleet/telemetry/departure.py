"""Is this ingest pod going away for good? The preStop hook of deploy/'s ingest StatefulSet.

    python -m fleet.telemetry.departure /run/haulmind/leaving

A StatefulSet scaled from N to M removes the pods of ordinals M..N-1, and their names (their
broker sessions) do not come back: each must drain its session and end it, or its share of the
trucks' messages waits at the broker for a replica that never returns. A pod deleted for any
other reason (a rolling update, a node drained, an eviction) comes back under the same name and
must keep its session. Kubernetes tells the two apart only through the StatefulSet's
``spec.replicas``, so this hook asks the API server and, when the pod's ordinal is beyond it,
writes the file that ``manage.py ingest --leave-if FILE`` reads on SIGTERM.

Any doubt (the API does not answer, the answer is unexpected) keeps the session: a replica that
should have left is then seen silent and retired by hand (``manage.py ingest --retire NAME``);
one that left wrongly would lose nothing either, but would drain for no reason.

Standard library only: it runs in the seconds before SIGTERM, without Django.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TIMEOUT_S = 5.0


def ordinal_of(pod: str) -> tuple[str, int]:
    """``("ingest", 2)`` for the pod ``ingest-2``: its StatefulSet and its ordinal."""
    name, _, number = pod.rpartition("-")
    if not name or not number.isdigit():
        raise ValueError(f"{pod!r} is not a StatefulSet pod name (NAME-ORDINAL)")
    return name, int(number)


def departing(pod: str, statefulset: dict[str, Any] | None) -> bool:
    """Whether ``pod`` leaves for good, given its StatefulSet as the API returned it (None: the
    StatefulSet is gone, and every pod of it with it)."""
    if statefulset is None or statefulset.get("metadata", {}).get("deletionTimestamp"):
        return True
    _, ordinal = ordinal_of(pod)
    replicas = statefulset.get("spec", {}).get("replicas", 1)
    return ordinal >= int(replicas)


def read_statefulset(
    api: str, namespace: str, name: str, *, token: str, context: ssl.SSLContext | None = None
) -> dict[str, Any] | None:
    """The StatefulSet from the API server at ``api``; None when it does not exist (404)."""
    request = urllib.request.Request(  # noqa: S310 - the API server's own https URL
        f"{api}/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context) as response:  # noqa: S310
            return json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def in_cluster() -> tuple[str, str, str, ssl.SSLContext]:
    """The API server's address, this pod's namespace, its token and its CA, as every pod has
    them (the service account's mounted files and the ``KUBERNETES_SERVICE_*`` variables)."""
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if ":" in host:
        host = f"[{host}]"
    context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT / "ca.crt"))
    return (
        f"https://{host}:{port}",
        (SERVICE_ACCOUNT / "namespace").read_text().strip(),
        (SERVICE_ACCOUNT / "token").read_text().strip(),
        context,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m fleet.telemetry.departure MARKER_FILE", file=sys.stderr)
        return 2
    marker = Path(args[0])
    pod = os.environ.get("POD_NAME") or socket.gethostname()
    try:
        statefulset_name, _ = ordinal_of(pod)
        api, namespace, token, context = in_cluster()
        statefulset = read_statefulset(
            api, namespace, statefulset_name, token=token, context=context
        )
    except (KeyError, OSError, ValueError, urllib.error.URLError) as exc:
        print(f"{pod}: departure not decided ({exc}); keeping the session", file=sys.stderr)
        return 0
    if departing(pod, statefulset):
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{pod}\n")
        print(f"{pod}: leaving for good; its session will be drained and ended")
    return 0


if __name__ == "__main__":
    sys.exit(main())
