"""Scores one trained model on the held-out first messages (gateway/model_eval.py); run by
`./aftersales train` in the Rasa venv, with this folder as the working directory:

    python evaluate_model.py MODEL.tar.gz SCORE.json   (gateway/model_eval.py `Score`; a file, as
                                                      Rasa's own log lines go to stdout)

Only the NLU pipeline runs (the situation router included): no action server is called and
nothing about a shopper is kept.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

from gateway.model_eval import Score, examples


async def score(model_path: str) -> Score:
    from rasa.core.agent import Agent

    agent = Agent.load(model_path)
    if not agent.is_ready():
        raise SystemExit(f"the model {model_path} could not be loaded")
    result = Score()
    for example in examples():
        parsed = await agent.parse_message(example.text)
        result.add(example, (parsed.get("intent") or {}).get("name"))
    return result


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.ERROR)
    result = asyncio.run(score(sys.argv[1]))
    Path(sys.argv[2]).write_text(json.dumps(result.to_json(), ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
