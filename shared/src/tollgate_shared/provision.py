"""Creates or updates every stream, durable consumer and bucket, idempotently (`just provision`)."""

from __future__ import annotations

import argparse
import asyncio
import logging

from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, NotFoundError

from tollgate_shared import names
from tollgate_shared.publishing import connect_nats
from tollgate_shared.settings import NatsAuth, ServiceSettings

log = logging.getLogger(__name__)


def stream_config(spec: names.StreamSpec, replicas: int = 1) -> api.StreamConfig:
    return api.StreamConfig(
        name=spec.name,
        subjects=list(spec.subjects),
        description=spec.description,
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        duplicate_window=spec.duplicate_window_s,
        max_age=spec.max_age_s or None,
        num_replicas=replicas,
        allow_direct=True,
    )


def consumer_config(spec: names.ConsumerSpec) -> api.ConsumerConfig:
    return api.ConsumerConfig(
        durable_name=spec.name,
        description=spec.description,
        deliver_policy=api.DeliverPolicy.ALL,
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=spec.ack_wait_s,
        max_deliver=spec.max_deliver,
        max_ack_pending=spec.max_ack_pending,
        filter_subjects=list(spec.filter_subjects),
        max_waiting=512,
    )


async def provision(js: JetStreamContext, replicas: int = 1) -> None:
    for spec in names.STREAMS:
        cfg = stream_config(spec, replicas)
        try:
            await js.stream_info(spec.name)
            await js.update_stream(cfg)
            log.info("stream %s updated", spec.name)
        except NotFoundError:
            await js.add_stream(cfg)
            log.info("stream %s created", spec.name)
    for cspec in names.ALL_CONSUMERS:
        # add_consumer is create-or-update for a durable with the same name.
        await js.add_consumer(cspec.stream, consumer_config(cspec))
        log.info("consumer %s/%s ready", cspec.stream, cspec.name)
    for bucket in names.KV_BUCKETS:
        try:
            await js.key_value(bucket)
        except BucketNotFoundError:
            await js.create_key_value(bucket=bucket, history=1, replicas=replicas)
            log.info("kv bucket %s created", bucket)
    try:
        await js.object_store(names.OBJ_BODIES)
    except (BucketNotFoundError, NotFoundError):
        await js.create_object_store(
            names.OBJ_BODIES, config=api.ObjectStoreConfig(ttl=7 * 24 * 3600, replicas=replicas)
        )
        log.info("object store %s created", names.OBJ_BODIES)


async def provision_url(nats_url: str, replicas: int = 1, auth: NatsAuth | None = None) -> None:
    """Provision as `auth`'s user (the `provision` user where NATS has authorization),
    else as the process's own NATS user from the environment."""
    nc = await connect_nats(nats_url, "tollgate-provision", auth=auth)
    try:
        await provision(nc.jetstream(), replicas)
    finally:
        await nc.drain()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replicas", type=int, default=1, help="stream replicas (3 in a cluster)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = ServiceSettings()
    asyncio.run(provision_url(settings.nats_url, args.replicas, settings.nats_auth()))


if __name__ == "__main__":
    main()
