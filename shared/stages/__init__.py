"""The stages as plain functions over ``Deps``, one module per stage: ``preprocess``,
``ocr``, ``discover``, ``failures``, and ``fanout`` (what a file past preprocess needs sent
next, shared by preprocess and `docpipe retry`). Each takes a parsed message (failures: a
dead letter's queue, body and id) and the ports, and knows nothing of Lambda or SQS
records: ``handlers/`` holds the entry points, ``shared.runtime.records`` the error model
around every ``run``. Each module's ``USES`` names the parts of ``Deps`` it builds."""
