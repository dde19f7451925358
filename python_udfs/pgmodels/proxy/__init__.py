"""Request-response serving: ``pgmodels serve``, a thin, stateless inference server that
speaks the Open Inference Protocol v2 (REST and gRPC) and turns each request into one
predict() statement run as the token's role.

app.py (the ASGI application) · fast.py (the infer routes, ahead of the framework) ·
rest.py and grpc_service.py (the two protocols) · tensors.py (OIP tensors in and out) ·
core.py (tokens, metadata, inference through the connection pool) · statements.py (a
request's SQL) · binding.py (its parameters as literals) · batching.py (concurrent
requests in one statement) · errors.py (the SQLSTATE -> status table) · metrics.py
(Prometheus)
"""
