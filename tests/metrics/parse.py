"""Reads a Prometheus text exposition on stdin with the Prometheus project's own parser
(prometheus_client.parser) and prints its families as JSON, for the Rust tests to check:
{"families": [{"name", "type", "samples": [{"name", "labels", "value"}]}]}.

A text the parser refuses makes this exit non-zero with its message, failing the test."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    families = []
    for family in text_string_to_metric_families(sys.stdin.read()):
        samples = [
            {"name": s.name, "labels": dict(s.labels), "value": s.value}
            for s in family.samples
        ]
        families.append({"name": family.name, "type": family.type, "samples": samples})
    json.dump({"families": families}, sys.stdout)


if __name__ == "__main__":
    main()
