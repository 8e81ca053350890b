"""Register components into PaddleSeg's own managers, refusing to shadow any.

PaddleSeg's ``ComponentManager.add_component`` warns and *replaces* a component
whose name is taken, and ``SegBuilder`` looks a ``type`` up across all managers
(first hit wins).  Registering through :func:`register` instead raises an error
naming both classes, so importing ``paddleseg_ctx`` can never change what a
stock PaddleSeg config builds.
"""
from paddleseg.cvlibs import manager

__all__ = ['ComponentCollisionError', 'register', 'registered_names']

# Same order SegBuilder.load_component_class searches.
_ALL_MANAGERS = (manager.MODELS, manager.BACKBONES, manager.DATASETS,
                 manager.TRANSFORMS, manager.LOSSES, manager.OPTIMIZERS)

_OURS = {}  # name -> manager name, for everything this package registered


class ComponentCollisionError(KeyError):
    """Raised when a component name is already taken in PaddleSeg's managers."""

    def __str__(self):  # KeyError would print the message with quotes
        return self.args[0]


def _qualname(obj):
    return '{}.{}'.format(obj.__module__, obj.__qualname__)


def _same_definition(a, b):
    # The same class seen again (e.g. after importlib.reload) is not a collision.
    return a is b or _qualname(a) == _qualname(b)


def register(component_manager):
    """Decorator: add a class/function to ``component_manager`` under its name.

    Raises:
        ComponentCollisionError: if any PaddleSeg manager already holds a
            different component of the same name.
    """

    def decorator(component):
        name = component.__name__
        for mgr in _ALL_MANAGERS:
            existing = mgr.components_dict.get(name)
            if existing is not None and not _same_definition(existing,
                                                             component):
                raise ComponentCollisionError(
                    'Cannot register {new} as "{name}": PaddleSeg\'s {mgr} '
                    'manager already holds {old} under that name. '
                    'paddleseg_ctx never replaces an existing component; '
                    'rename the new class.'.format(
                        new=_qualname(component),
                        name=name,
                        mgr=mgr.name,
                        old=_qualname(existing)))
        component_manager.components_dict[name] = component
        _OURS[name] = component_manager.name
        return component

    return decorator


def registered_names():
    """Names this package registered, mapped to their manager's name."""
    return dict(_OURS)
