"""The anchor for bench/reads.py: a bare FastAPI app that returns fixed JSON documents of the
same size as certpost's answers, served by uvicorn with the settings ``certpost serve`` uses
(app/cli.py: ``uvicorn.run(app, host, port, log_level="info", proxy_headers=False)``, one
worker, uvicorn's default loop and HTTP implementation).

    .venv/bin/python bench/anchor_app.py --port 8101 --bodies bodies.json

``bodies.json`` maps a route name ("tls", "domains", "certificates") to the JSON document that
route returns; every path under /<route>/ answers it (the Lua script's random part is ignored).
"""

from __future__ import annotations

import argparse
import json

import uvicorn
from fastapi import FastAPI


def create_app(bodies: dict[str, object]) -> FastAPI:
    app = FastAPI()

    def route(body):
        async def answer(rest: str = ""):
            return body
        return answer

    for name, body in bodies.items():
        app.add_api_route(f"/{name}/{{rest:path}}", route(body), methods=["GET"])
    app.add_api_route("/healthz", route({"status": "ok"}), methods=["GET"])
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bodies", required=True)
    args = parser.parse_args()
    with open(args.bodies) as f:
        bodies = json.load(f)
    uvicorn.run(create_app(bodies), host=args.host, port=args.port, log_level="info", proxy_headers=False)


if __name__ == "__main__":
    main()
