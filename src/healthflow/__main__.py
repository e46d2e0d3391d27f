from healthflow.cli import app

app()
