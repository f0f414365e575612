"""Other Python model servers serving the same bundle, for `bench.serve --peer` to compare
with. Each is a launcher (`<name>_peer.py`) run by that server's own virtual environment,
never the project's (their packages are not dependencies), importing only the torch-free
`model` package of this tree; `work` holds what every peer does per request.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, replace

from bench.harness import Request


@dataclass(frozen=True)
class Peer:
    title: str  # the server's name, as the tables show it
    package: str  # its distribution, for the version
    module: str  # the launcher, run by that server's venv
    predict_path: str  # where it takes the service's /predict body; {model}: the model's name
    env: tuple[tuple[str, str], ...] = ()  # settings of that server, from its environment

    def request(self, request: Request, model: str) -> Request:
        """The request a load sends, for this server: /predict moves to `predict_path`; the
        Open Inference Protocol's infer is the same everywhere."""
        if request.path != "/predict":
            return request
        return Request(request.method, self.predict_path.format(model=model), request.body)


MLSERVER = Peer("MLServer", "mlserver", "bench.peers.mlserver_peer", "/predict")
KSERVE = Peer("KServe", "kserve", "bench.peers.kserve_peer", "/v1/models/{model}:predict")
PEERS = {
    "mlserver": MLSERVER,
    # MLServer's `debug` setting (on by default) is what turns uvicorn's access log on
    "mlserver-nolog": replace(MLSERVER, title="MLServer, no access log",
                              env=(("MLSERVER_DEBUG", "false"),)),
    "kserve": KSERVE,
}
READY_PATH = "/v2/health/ready"


def version(python: str, package: str) -> str:
    """The package's version in another interpreter's environment."""
    done = subprocess.run(
        [python, "-c", f"import importlib.metadata as m; print(m.version({package!r}))"],
        capture_output=True, text=True, check=True, timeout=60)
    return done.stdout.strip()
