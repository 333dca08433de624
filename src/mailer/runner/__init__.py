"""The processes that run deliveries: send_all, workers, leases, lock, rate limit, wake-up."""
