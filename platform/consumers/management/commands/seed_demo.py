"""`python manage.py seed_demo --consumers N --products N --events N --seed S [--merchants K]`."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from consumers.seeding import seed_marketplace


class Command(BaseCommand):
    help = (
        "Generate a deterministic synthetic marketplace (merchants, catalogues, consumers, profiles, consents, "
        "events) and write it through the ingestion services. Same arguments, same data."
    )

    def add_arguments(self, parser):
        parser.add_argument("--consumers", type=int, default=2000)
        parser.add_argument("--products", type=int, default=600)
        parser.add_argument("--events", type=int, default=60_000, help="behaviour events (cancellations come on top)")
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--merchants", type=int, default=4)
        parser.add_argument("--days", type=int, default=365, help="history length")
        parser.add_argument("--chunk", type=int, default=20_000, help="consumers generated and written per chunk")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar (there is none off a terminal)")

    def handle(self, *args, consumers, products, events, seed, merchants, days, chunk, no_progress, **options):
        for name, value, least in (
            ("--consumers", consumers, 1),
            ("--products", products, 1),
            ("--events", events, 0),
            ("--merchants", merchants, 1),
            ("--days", days, 1),
            ("--chunk", chunk, 1),
        ):
            if value < least:
                raise CommandError(f"{name} must be at least {least}")
        bar = tqdm(
            total=events,
            unit="ev",
            unit_scale=True,
            desc="seed_demo",
            file=getattr(self.stderr, "_out", None),
            disable=True if no_progress else None,  # None: a bar on a terminal, nothing in a log file
            mininterval=0.5,
        )
        try:
            summary = seed_marketplace(
                consumers=consumers,
                products=products,
                events=events,
                seed=seed,
                merchants=merchants,
                days=days,
                chunk_consumers=chunk,
                progress=bar.update,
            )
        finally:
            bar.close()
        rate = summary.events_sent / summary.seconds if summary.seconds else 0
        self.stdout.write(
            f"seed_demo (seed {seed}): {summary.merchants} merchants, {summary.products:,} products, "
            f"{summary.consumers:,} consumers ({summary.profiles:,} profiles, {summary.consents:,} consent records), "
            f"{summary.events_sent:,} events sent, {summary.events_written:,} written "
            f"in {summary.seconds:.1f} s ({rate:,.0f} events/s)"
        )
        if summary.rejected:
            raise CommandError(f"{summary.rejected} generated rows were rejected; this is a bug in the generator")
