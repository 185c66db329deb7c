-- One database per service (contract section 1: services never read each other's tables,
-- and every service has its own `outbox` and `inbox`). Run once by the postgres image's
-- entrypoint, on an empty data directory; each service migrates its own schema on start.
CREATE DATABASE intake;
CREATE DATABASE referral;
CREATE DATABASE partners;
CREATE DATABASE audit;
