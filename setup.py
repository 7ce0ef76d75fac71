"""Shipway: a self-hosted git-push-to-deploy platform."""
from setuptools import find_packages, setup

setup(
    name="shipway",
    version="0.1.0",
    description="Self-hosted git-push-to-deploy platform (Heroku/Gigalixir style).",
    python_requires=">=3.11",
    packages=find_packages(include=[
        "core*", "server*", "controller*", "runner*", "builder*", "storage*", "router*",
        "hooks*", "gitd*", "cli*", "logger*", "buildpacks",
    ]),
    include_package_data=True,
    package_data={"buildpacks": ["env.sh", "*/bin/*", "*/lib/*"], "": ["*.sh", "*.yaml", "*.json", "*.ini", "*.mako", "*.conf", "*.txt", "files/*", "alembic/*", "alembic/versions/*"]},
    install_requires=[
        "Twisted[conch,tls]>=24.3",  # tls: service_identity, for the API over TLS
        "dulwich>=0.22",
        "SQLAlchemy>=2.0",
        "alembic>=1.13",
        "psycopg[binary]>=3.1",
        "argon2-cffi>=23.1",
        "cryptography>=42",
        "docker>=7.0",
        "boto3>=1.34",
        "click>=8.1",
        "attrs>=23.2",
        "PyYAML>=6.0",
        "requests>=2.31",
        "zope.interface>=6.0",
        "psutil>=5.9",  # issue 14: the host's own addresses, refused to fetches
        # issue 14: registrable domains (bundled Public Suffix List, offline)
        # and the DNS TXT check of SHIPWAY_DOMAIN_VERIFY=dns.
        "publicsuffixlist>=1.0",
        "dnspython>=2.6",
        # issue 16: certificates from ACME (certbot's client library), IDNA names
        "acme>=2.0",
        "josepy>=1.14",
        "idna>=3.4",
    ],
    extras_require={
        "test": ["pytest>=8", "moto[server]>=5.0", "pytest-timeout>=2.3",
                 "openapi-spec-validator>=0.7",
                 "dnslib>=0.9"],  # issue 14: a real DNS server in tests/security
    },
    entry_points={"console_scripts": ["shipway=cli.main:main"]},
)
