package store

// SetMigrateHook makes the store's migration call f after each stage of a
// tenant ("copied", "switched"); an error from f stops it there.
func (s *Store) SetMigrateHook(f func(stage, id string) error) { s.hook = f }
