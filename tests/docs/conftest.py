from support.postgres import postgres_cluster

__all__ = ["postgres_cluster"]
