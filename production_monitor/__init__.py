"""Client SDK for prodmon: report exceptions and request latencies from services to Kafka.

    from production_monitor import ProductionMonitor

    monitor = ProductionMonitor("kafka-1:9092", service="checkout")
    try:
        charge()
    except Exception as exc:
        issue_id = monitor.track_exception(exc, context={"user_id": "123"}, severity="high")
    monitor.record_latency("/api/pay", 12.5, status=200, method="POST")
    monitor.close()

`AsyncProductionMonitor` offers the same calls to asyncio applications.
"""

from production_monitor.client import AsyncProductionMonitor, MonitorStats, ProductionMonitor

__all__ = ["AsyncProductionMonitor", "MonitorStats", "ProductionMonitor"]
