"""Request-response serving: ``pgmodels serve``, a thin, stateless inference server that
speaks the Open Inference Protocol v2 (REST and gRPC) and turns each request into one
predict() statement run as the token's role.

app.py (the ASGI application) · rest.py and grpc_service.py (the two protocols) ·
tensors.py (OIP tensors in and out) · core.py (tokens, metadata, inference through the
connection pool) · errors.py (the SQLSTATE -> status table) · metrics.py (Prometheus)
"""
