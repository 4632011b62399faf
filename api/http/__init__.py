"""http: the FastAPI app, its dependencies, error mapping, schemas and one routes module per
resource.
"""
