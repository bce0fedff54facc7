"""Migration operations for tables that moved between apps (ADR 0002).

The queue, credits and webhook models left the former `rendering` app for `jobs`, `credits`
and `generations`, keeping their table names. A database made before the move already has
those tables and columns; a new one does not. These operations change the migration state
as usual and touch the database only where the table or column is missing.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations


def _table_exists(schema_editor: Any, table: str) -> bool:
    return table in schema_editor.connection.introspection.table_names()


def _column_exists(schema_editor: Any, table: str, column: str) -> bool:
    with schema_editor.connection.cursor() as cursor:
        description = schema_editor.connection.introspection.get_table_description(cursor, table)
    return any(col.name == column for col in description)


class CreateModelIfMissing(migrations.CreateModel):
    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        model = to_state.apps.get_model(app_label, self.name)
        if not _table_exists(schema_editor, model._meta.db_table):
            super().database_forwards(app_label, schema_editor, from_state, to_state)


class AddFieldIfMissing(migrations.AddField):
    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        column = model._meta.get_field(self.name).column
        if not _column_exists(schema_editor, model._meta.db_table, column):
            super().database_forwards(app_label, schema_editor, from_state, to_state)


class AddIndexIfMissing(migrations.AddIndex):
    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        with schema_editor.connection.cursor() as cursor:
            existing = schema_editor.connection.introspection.get_constraints(
                cursor, model._meta.db_table
            )
        if self.index.name not in existing:
            super().database_forwards(app_label, schema_editor, from_state, to_state)


class AddConstraintIfMissing(migrations.AddConstraint):
    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        with schema_editor.connection.cursor() as cursor:
            existing = schema_editor.connection.introspection.get_constraints(
                cursor, model._meta.db_table
            )
        if self.constraint.name not in existing:
            super().database_forwards(app_label, schema_editor, from_state, to_state)
