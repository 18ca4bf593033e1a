"""Sends events to Rapport with Segment's official Python SDK (segment-analytics-python).

Usage: segment_python.py HOST WRITE_KEY
Prints, as JSON, every message the SDK enqueued, so the caller can check what was stored.
"""
import datetime
import json
import sys

import segment.analytics as analytics


def main() -> None:
    host, write_key = sys.argv[1], sys.argv[2]
    failures = []
    sent = []
    for gzip in (False, True):
        client = analytics.Client(
            write_key,
            host=host,
            gzip=gzip,
            max_retries=1,
            on_error=lambda error, items: failures.append(str(error)),
        )
        tag = "gz" if gzip else "plain"
        calls = [
            client.identify(f"sdk-user-{tag}", {"email": f"{tag}@example.com", "plan": "pro", "seats": 5}),
            client.track(
                f"sdk-user-{tag}",
                "Order Completed",
                {"revenue": 42.5, "currency": "EUR", "products": [{"sku": "A-1", "qty": 2}]},
                context={"ip": "203.0.113.7"},
                timestamp=datetime.datetime(2024, 5, 1, 12, 0, 0, tzinfo=datetime.timezone.utc),
            ),
            client.page(f"sdk-user-{tag}", "Docs", "Pricing", {"path": "/pricing"}),
            client.screen(f"sdk-user-{tag}", "App", "Home", {"tab": 1}),
            client.group(f"sdk-user-{tag}", f"acme-{tag}", {"industry": "retail"}),
            client.alias(f"sdk-user-{tag}", f"old-id-{tag}"),
            client.track(anonymous_id=f"anon-{tag}", event="Anonymous Visit"),
        ]
        for ok, msg in calls:
            if not ok:
                failures.append(f"not enqueued: {msg}")
            sent.append(json.loads(json.dumps(msg, default=str)))
        client.flush()
        client.join()
    if failures:
        print(json.dumps({"failures": failures}))
        sys.exit(1)
    print(json.dumps({"sent": sent}))


if __name__ == "__main__":
    main()
