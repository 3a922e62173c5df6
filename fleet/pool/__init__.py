"""The inference pool seen from the control room: its nodes, slices, replicas and deployments
over REST, a page in the admin, drains (audited), and ``haulmind_pool_*`` on ``/metrics``. The
state lives in the pool's Redis (``inference.pool.PoolStore``); only the drain audit is in the
database."""
