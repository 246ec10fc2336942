import GRDB

/// Applies the numbered `.sql` files of `migrations/` (embedded at build time by
/// `scripts/embed-resources`) in order, recording each in `grdb_migrations`.
public enum Migrations {
    /// The migrations in order: (identifier, SQL).
    public static var all: [(id: String, sql: String)] { EmbeddedResources.migrations }

    public static func migrator(upTo last: String? = nil) -> DatabaseMigrator {
        var migrator = DatabaseMigrator()
        for migration in all {
            migrator.registerMigration(migration.id) { db in try db.execute(sql: migration.sql) }
            if migration.id == last { break }
        }
        return migrator
    }
}
