"""placeholder"""
import click
@click.command("demo")
def demo():
    """placeholder"""
