"""A Flask app served by gunicorn: the smallest app that needs packages
from an index to build."""
import os

from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello() -> str:
    return "Hello from Flask (release %s) %s\n" % (
        os.environ.get("APP_VERSION", "unknown"), os.environ.get("GREETING", ""))
