"""A small producer of demo sensor readings for the compose stack and for tests.

Sends JSON records ``{"seq", "sensor", "time", "temp", "vib", "pressure"}`` keyed by
sensor to a Kafka topic: correlated readings that follow a daily load cycle, with a rare
fault (vibration up, pressure down) and, every ``--shift-every`` records, a lasting level
shift of one sensor (a drift). Needs only kafka-python.

Usage::

    python producer.py --bootstrap kafka:9092 --topic sensors [--rate 200] [--count 0]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time

from kafka import KafkaProducer


def readings(sensors: int, seed: int, shift_every: int, start: float):
    """Endless sensor readings, one sensor after the other."""
    rng = random.Random(seed)
    offsets = [0.0] * sensors
    i = 0
    while True:
        s = i % sensors
        if shift_every and i and i % shift_every == 0:
            offsets[rng.randrange(sensors)] += rng.choice((-1, 1)) * 4.0
        load = math.sin(2 * math.pi * i / (sensors * 1440.0) + s) + rng.gauss(0, 0.1)
        temp = 60 + 2 * s + 3 * load + offsets[s] + rng.gauss(0, 0.2)
        vib = 0.5 + 0.2 * load + rng.gauss(0, 0.02)
        pressure = 100 - 2 * load + rng.gauss(0, 0.3)
        if rng.random() < 0.002:
            vib, pressure = vib * 6, pressure - 30
        yield {"seq": i, "sensor": f"s{s}", "time": round(start + i / sensors, 3),
               "temp": round(temp, 4), "vib": round(vib, 5), "pressure": round(pressure, 4)}
        i += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="kafka:9092", help="Kafka bootstrap servers")
    parser.add_argument("--topic", default="sensors")
    parser.add_argument("--rate", type=float, default=200.0,
                        help="records per second (0: as fast as possible)")
    parser.add_argument("--count", type=int, default=0, help="records to send (0: forever)")
    parser.add_argument("--sensors", type=int, default=16)
    parser.add_argument("--shift-every", type=int, default=50_000,
                        help="a sensor's level shifts every N records (0: never)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    for attempt in range(60):  # the broker may still be starting
        try:
            producer = KafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=20)
            break
        except Exception as exc:  # kafka-python raises NoBrokersAvailable and friends
            print(f"producer: waiting for Kafka at {args.bootstrap}: {exc}", file=sys.stderr)
            time.sleep(min(2.0, 0.2 * (attempt + 1)))
    else:
        return 1
    sent, started = 0, time.monotonic()
    try:
        for row in readings(args.sensors, args.seed, args.shift_every, time.time()):
            if args.count and sent >= args.count:
                break
            producer.send(args.topic, key=row["sensor"].encode(), value=json.dumps(row).encode())
            sent += 1
            if args.rate > 0:
                ahead = sent / args.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            if sent % 10_000 == 0:
                print(f"producer: {sent} records sent to {args.topic}", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        producer.flush()
        producer.close()
    print(f"producer: {sent} records sent to {args.topic}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
