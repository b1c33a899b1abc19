"""A fixed-latency OpenAI-compatible server for the benchmarks: prints its URL, serves until killed.

python bench/server.py LATENCY_MS
"""

from __future__ import annotations

import sys
import threading

from auditor.run.serve import ChatServer, Scripted, chat_body

latency = float(sys.argv[1]) / 1000 if len(sys.argv) > 1 else 0.0
body = chat_body("ok", model="bench-model", prompt_tokens=12, completion_tokens=1)
reply = Scripted(body, delay_s=latency)
server = ChatServer(lambda request: reply, model_name="bench-model", record=False).start()
print(server.url, flush=True)
threading.Event().wait()
