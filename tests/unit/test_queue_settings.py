"""One set of queue settings on every runtime: template.yaml (Lambda), the settings model
(`docpipe local up`, the worker's `ensure_queues`) and deploy/elasticmq.conf (Docker users)
name the same stage queues and DLQs with the same maxReceiveCount."""

from __future__ import annotations

import re
from pathlib import Path

from shared.ports import STAGE_QUEUES, dlq_name
from shared.runtime import lambda_template
from shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def elasticmq_queues() -> dict[str, tuple[str, int]]:
    text = (REPO / "deploy" / "elasticmq.conf").read_text()
    found = re.findall(
        r"^\s*([\w-]+)\s*\{[^{}]*deadLettersQueue\s*\{\s*name\s*=\s*\"([\w-]+)\",\s*maxReceiveCount\s*=\s*(\d+)\s*\}",
        text,
        re.M,
    )
    return {name: (dlq, int(count)) for name, dlq, count in found}


def test_elasticmq_the_template_and_the_settings_agree():
    template = lambda_template.load(REPO / "template.yaml", {"StorageBucketName": "docpipe"})
    chain = {name: (dlq, count) for name, dlq, count in template.dlq_chain()}
    settings = Settings()
    elasticmq = elasticmq_queues()
    for stage in STAGE_QUEUES:
        name = f"{settings.queue_prefix}-{stage}"
        expected = (f"{settings.queue_prefix}-{dlq_name(stage)}", settings.max_receive_count)
        assert chain[name] == expected, f"template.yaml: {name} {chain[name]} != {expected}"
        assert elasticmq[name] == expected, f"elasticmq.conf: {name} {elasticmq[name]} != {expected}"
